//! The `MCP_*` environment variables: one row per variable, used both to apply overrides
//! and to document them (`ENV_VARS` is the single source).
//!
//! Overrides are applied to the YAML tree between the file and the flags, after each value
//! was checked against its row's kind, so a bad value is reported with the variable's name.
//! Secret variables are never echoed back in an error or a log. Reading the process
//! environment happens in `LoadOptions::from_process_env`, not here.

use serde_yaml_ng::{Mapping, Value};

/// What a variable's value must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Bool,
    Int,
    Float,
    /// Go duration (`30s`) or plain milliseconds.
    Duration,
    /// A port number that replaces the port of `metrics.endpoint`.
    MetricsPort,
    /// A secret: kept out of the YAML tree, never printed.
    Secret,
}

/// One environment variable.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    pub name: &'static str,
    /// The key path it sets (for `Secret`, what it stands for).
    pub path: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
}

const fn row(name: &'static str, path: &'static str, kind: Kind, doc: &'static str) -> EnvVar {
    EnvVar {
        name,
        path,
        kind,
        doc,
    }
}

/// Every variable the router reads. Flags beat these; these beat the file.
pub static ENV_VARS: &[EnvVar] = &[
    row(
        "MCP_ROUTER_CONFIG",
        "(config file path)",
        Kind::Str,
        "configuration file, when --config is not given",
    ),
    row(
        "MCP_LOGGING_LEVEL",
        "logging.level",
        Kind::Str,
        "trace, debug, info, warn, error",
    ),
    row(
        "MCP_LOGGING_FORMAT",
        "logging.format",
        Kind::Str,
        "json or text",
    ),
    row(
        "MCP_LOGGING_OUTPUT",
        "logging.output",
        Kind::Str,
        "stderr (logs never go to stdout)",
    ),
    row(
        "MCP_LOGGING_INCLUDE_CALLER",
        "logging.include_caller",
        Kind::Bool,
        "add source file and line to log lines",
    ),
    row(
        "MCP_LOCAL_REQUEST_TIMEOUT_MS",
        "local.request_timeout_ms",
        Kind::Int,
        "per-request timeout, queued time included",
    ),
    row(
        "MCP_LOCAL_MAX_CONCURRENT_REQUESTS",
        "local.max_concurrent_requests",
        Kind::Int,
        "requests in flight at once",
    ),
    row(
        "MCP_LOCAL_MAX_QUEUED_REQUESTS",
        "local.max_queued_requests",
        Kind::Int,
        "requests waiting while the upstream is down",
    ),
    row(
        "MCP_LOCAL_MAX_MESSAGE_SIZE",
        "local.max_message_size",
        Kind::Int,
        "largest message in either direction, bytes",
    ),
    row(
        "MCP_LOCAL_SHUTDOWN_GRACE_MS",
        "local.shutdown_grace_ms",
        Kind::Int,
        "shutdown wait for requests and for the server to exit",
    ),
    row(
        "MCP_LOCAL_READ_BUFFER_SIZE",
        "local.read_buffer_size",
        Kind::Int,
        "stdin read buffer, bytes",
    ),
    row(
        "MCP_LOCAL_WRITE_BUFFER_SIZE",
        "local.write_buffer_size",
        Kind::Int,
        "stdout write buffer, bytes",
    ),
    row(
        "MCP_LOCAL_RATE_LIMIT_ENABLED",
        "local.rate_limit.enabled",
        Kind::Bool,
        "rate limit client requests (a request over the rate waits its turn, up to max_wait_ms)",
    ),
    row(
        "MCP_LOCAL_RATE_LIMIT_REQUESTS_PER_SECOND",
        "local.rate_limit.requests_per_second",
        Kind::Float,
        "token bucket rate, requests per second",
    ),
    row(
        "MCP_LOCAL_RATE_LIMIT_BURST",
        "local.rate_limit.burst",
        Kind::Int,
        "token bucket size: requests that may go at once",
    ),
    row(
        "MCP_GATEWAY_URL",
        "gateway.url",
        Kind::Str,
        "gateway address: ws://, wss://, tcp://, tcps://, tcp+tls://",
    ),
    row(
        "MCP_GATEWAY_PROTOCOL_PREFERENCE",
        "gateway.protocol_preference",
        Kind::Str,
        "websocket or tcp",
    ),
    row(
        "MCP_GATEWAY_AUTO_SELECT",
        "gateway.auto_select",
        Kind::Bool,
        "fall back to other endpoints/protocols",
    ),
    row(
        "MCP_GATEWAY_FRAMING",
        "gateway.framing",
        Kind::Str,
        "TCP framing: mcpb (the gateway's) or legacy (the Go router's 16-byte header)",
    ),
    row(
        "MCP_GATEWAY_TCP_NOTIFICATIONS",
        "gateway.tcp_notifications",
        Kind::Bool,
        "send client notifications over the TCP protocol",
    ),
    row(
        "MCP_GATEWAY_AUTH_TYPE",
        "gateway.auth.type",
        Kind::Str,
        "bearer, mtls or oauth2",
    ),
    row(
        "MCP_GATEWAY_AUTH_TOKEN_ENV",
        "gateway.auth.token_env",
        Kind::Str,
        "variable holding the bearer token",
    ),
    row(
        "MCP_GATEWAY_AUTH_TOKEN_FILE",
        "gateway.auth.token_file",
        Kind::Str,
        "file holding the bearer token",
    ),
    row(
        "MCP_GATEWAY_AUTH_TOKEN_SECURE_KEY",
        "gateway.auth.token_secure_key",
        Kind::Str,
        "secure-store key of the bearer token",
    ),
    row(
        "MCP_GATEWAY_AUTH_PER_MESSAGE_AUTH",
        "gateway.auth.per_message_auth",
        Kind::Bool,
        "token inside every message",
    ),
    row(
        "MCP_GATEWAY_CONNECTION_TIMEOUT_MS",
        "gateway.connection.timeout_ms",
        Kind::Int,
        "connect timeout",
    ),
    row(
        "MCP_GATEWAY_CONNECTION_KEEPALIVE_INTERVAL_MS",
        "gateway.connection.keepalive_interval_ms",
        Kind::Int,
        "keepalive ping interval",
    ),
    row(
        "MCP_GATEWAY_TLS_VERIFY",
        "gateway.tls.verify",
        Kind::Bool,
        "verify the gateway's certificate",
    ),
    row(
        "MCP_GATEWAY_TLS_CA_CERT_PATH",
        "gateway.tls.ca_cert_path",
        Kind::Str,
        "CA bundle for the gateway",
    ),
    row(
        "MCP_GATEWAY_TLS_MIN_VERSION",
        "gateway.tls.min_version",
        Kind::Str,
        "1.2 or 1.3",
    ),
    row(
        "MCP_METRICS_ENABLED",
        "metrics.enabled",
        Kind::Bool,
        "serve Prometheus metrics (does nothing yet)",
    ),
    row(
        "MCP_METRICS_ENDPOINT",
        "metrics.endpoint",
        Kind::Str,
        "metrics listener host:port (does nothing yet)",
    ),
    row(
        "MCP_METRICS_PATH",
        "metrics.path",
        Kind::Str,
        "metrics URL path (does nothing yet)",
    ),
    row(
        "MCP_METRICS_PORT",
        "metrics.endpoint",
        Kind::MetricsPort,
        "port of the metrics listener (seed name; does nothing yet)",
    ),
    row(
        "MCP_OBSERVABILITY_ENABLED",
        "metrics.enabled",
        Kind::Bool,
        "seed name for metrics.enabled (does nothing yet)",
    ),
    row(
        "MCP_TRACING_ENABLED",
        "tracing.enabled",
        Kind::Bool,
        "OpenTelemetry tracing (does nothing yet)",
    ),
    row(
        "MCP_DIRECT_CLIENTS_ENABLED",
        "direct_clients.enabled",
        Kind::Bool,
        "direct (non-gateway) servers (does nothing: they cannot be switched off)",
    ),
    row(
        "MCP_AUTO_DETECT_PROTOCOLS",
        "direct_clients.auto_detection.enabled",
        Kind::Bool,
        "seed name: protocol auto-detection (does nothing: auto_detect is set per server)",
    ),
    row(
        "MCP_DIRECT_AUTO_DETECTION_ENABLED",
        "direct_clients.auto_detection.enabled",
        Kind::Bool,
        "protocol auto-detection (does nothing: auto_detect is set per server)",
    ),
    row(
        "MCP_DIRECT_AUTO_DETECTION_TIMEOUT",
        "direct_clients.auto_detection.timeout",
        Kind::Duration,
        "per-candidate probe timeout",
    ),
    row(
        "MCP_DIRECT_HEALTH_CHECK_ENABLED",
        "direct_clients.health_check.enabled",
        Kind::Bool,
        "direct server health checks (does nothing yet)",
    ),
    row(
        "MCP_DIRECT_MAX_CONNECTIONS",
        "direct_clients.max_connections",
        Kind::Int,
        "direct connections at most (does nothing: one connection per server)",
    ),
    row(
        "MCP_CONNECTION_POOLING_ENABLED",
        "gateway.connection.pool.enabled",
        Kind::Bool,
        "seed name: the gateway connection pool (false: one connection per endpoint)",
    ),
    row(
        "MCP_MEMORY_OPTIMIZATION_ENABLED",
        "direct_clients.memory_optimization.enable_object_pooling",
        Kind::Bool,
        "seed name (does nothing: Go memory tuning)",
    ),
    row(
        "MCP_LOAD_BALANCER_STRATEGY",
        "gateway_pool.load_balancer.strategy",
        Kind::Str,
        "round_robin, least_connections, weighted, priority",
    ),
    row(
        "MCP_CIRCUIT_BREAKER_ENABLED",
        "gateway_pool.circuit_breaker.enabled",
        Kind::Bool,
        "a circuit breaker per gateway endpoint",
    ),
    row(
        "MCP_SERVICE_DISCOVERY_ENABLED",
        "gateway_pool.service_discovery.enabled",
        Kind::Bool,
        "gateway pool service discovery (does nothing yet)",
    ),
    row(
        "MCP_AUTH_TOKEN",
        "gateway bearer token",
        Kind::Secret,
        "the bearer token itself (secret)",
    ),
    row(
        "MCP_CLIENT_SECRET",
        "OAuth2 client secret",
        Kind::Secret,
        "the OAuth2 client secret (secret)",
    ),
    row(
        "MCP_OAUTH_PASSWORD",
        "OAuth2 password",
        Kind::Secret,
        "the OAuth2 password-grant password (secret)",
    ),
];

pub fn find(name: &str) -> Option<&'static EnvVar> {
    ENV_VARS.iter().find(|v| v.name == name)
}

/// Checks `value` against the row's kind and turns it into a YAML value.
pub fn to_yaml(var: &EnvVar, value: &str) -> Result<Value, String> {
    let v = value.trim();
    let bad = |allowed: &str| format!("{}='{}' is not valid: expected {allowed}", var.name, value);
    match var.kind {
        Kind::Str => Ok(Value::String(value.to_owned())),
        Kind::Bool => match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err(bad("true or false")),
        },
        Kind::Int => v
            .parse::<u64>()
            .map(|n| Value::Number(n.into()))
            .map_err(|_| bad("a whole number ≥ 0")),
        Kind::Float => v
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| Value::Number(f.into()))
            .ok_or_else(|| bad("a number")),
        Kind::Duration => super::duration::parse(v)
            .map(|_| Value::String(v.to_owned()))
            .map_err(|e| format!("{}: {e}", var.name)),
        Kind::MetricsPort => v
            .parse::<u16>()
            .map(|p| Value::Number(p.into()))
            .map_err(|_| bad("a port number (1-65535)")),
        Kind::Secret => Err(format!("{} is a secret and has no key path", var.name)),
    }
}

/// Sets `path` (dot-separated) in a YAML mapping tree, creating mappings on the way.
pub fn set_path(root: &mut Value, path: &str, value: Value) {
    let mut node = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else { return };
        let key = Value::String(part.to_owned());
        if parts.peek().is_none() {
            map.insert(key, value);
            return;
        }
        if !map.get(&key).is_some_and(Value::is_mapping) {
            map.insert(key.clone(), Value::Mapping(Mapping::new()));
        }
        let Some(next) = map.get_mut(&key) else {
            return;
        };
        node = next;
    }
}

/// Reads `path` from a YAML tree.
pub fn get_path<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |node, part| node.get(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_unique_and_prefixed() {
        let mut names: Vec<&str> = ENV_VARS.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ENV_VARS.len());
        assert!(names.iter().all(|n| n.starts_with("MCP_")));
    }

    #[test]
    fn values_are_checked_by_kind() {
        let level = find("MCP_LOCAL_REQUEST_TIMEOUT_MS").unwrap();
        assert_eq!(to_yaml(level, "250").unwrap(), Value::Number(250u64.into()));
        let err = to_yaml(level, "soon").unwrap_err();
        assert!(
            err.contains("MCP_LOCAL_REQUEST_TIMEOUT_MS='soon'") && err.contains("whole number")
        );
        assert_eq!(
            to_yaml(find("MCP_METRICS_ENABLED").unwrap(), "off").unwrap(),
            Value::Bool(false)
        );
        assert!(to_yaml(find("MCP_METRICS_PORT").unwrap(), "99999").is_err());
    }

    #[test]
    fn set_path_creates_the_tree() {
        let mut root = Value::Null;
        set_path(&mut root, "a.b.c", Value::Bool(true));
        set_path(&mut root, "a.d", Value::Bool(false));
        assert_eq!(get_path(&root, "a.b.c"), Some(&Value::Bool(true)));
        assert_eq!(get_path(&root, "a.d"), Some(&Value::Bool(false)));
    }
}
