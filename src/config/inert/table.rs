//! The table of keys that do nothing yet: which keys, why, and which planned capability
//! will make them work. Data only; `inert.rs` matches it against what the user set.
//!
//! A path covers the key and everything under it; `[]` stands for any list index. Keep the
//! reasons short and concrete: each becomes the end of a line the user reads at start.

/// One group of keys that do nothing, for one reason.
pub(super) struct Row {
    /// Key paths covered: each key and every key under it; `[]` stands for any list index.
    pub paths: &'static [&'static str],
    /// What happens instead.
    pub why: &'static str,
    /// The capability that will make these keys work, when one is planned.
    pub planned: Option<&'static str>,
    /// `(key, value)` relative to each path (`""`: the key itself): a setting that asks for
    /// what the router does anyway (`tracing.enabled: false`) is not worth a note, and
    /// neither are the other keys of a section it turns off.
    pub quiet: Option<(&'static str, bool)>,
}

const OPERATIONS: Option<&str> = Some("operations");
const GATEWAY_POOL: Option<&str> = Some("gateway pool");
const OFF: Option<(&str, bool)> = Some(("enabled", false));

pub(super) static ROWS: &[Row] = &[
    Row {
        paths: &["tracing"],
        why: "tracing export (OpenTelemetry) is not built",
        planned: OPERATIONS,
        quiet: OFF,
    },
    Row {
        paths: &["metrics"],
        why: "the Prometheus metrics and health endpoint is not built",
        planned: OPERATIONS,
        quiet: OFF,
    },
    Row {
        paths: &["logging.sampling"],
        why: "log sampling is not built: every log line at the level is written",
        planned: OPERATIONS,
        quiet: OFF,
    },
    Row {
        paths: &["direct_clients.observability"],
        why: "per-transport observability is not built",
        planned: OPERATIONS,
        quiet: None,
    },
    Row {
        paths: &["advanced.debug"],
        why: "frame logging, failure dumps and pprof are not built (logging.level: trace logs every message)",
        planned: None,
        quiet: None,
    },
    // Before the breaker row, which covers the rest of `advanced.circuit_breaker`.
    Row {
        paths: &[
            "advanced.circuit_breaker.max_requests",
            "advanced.circuit_breaker.success_ratio",
        ],
        why: "a breaker closes after success_threshold successes in a row; there is no half-open request cap or success ratio",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &["direct_clients.health_check"],
        why: "health checks of direct servers are not built (WebSocket servers are pinged: direct_clients.websocket.ping_interval)",
        planned: None,
        quiet: OFF,
    },
    Row {
        paths: &[
            "direct_clients.adaptive_timeout",
            "direct_clients.adaptive_retry",
            "direct_clients.timeout_tuning",
        ],
        why: "adaptive timeouts and retries are not built; local.request_timeout_ms bounds every request",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &[
            "gateway.connection.max_connections",
            "gateway.connection.max_connections_per_ip",
            "gateway.endpoints[].connection.max_connections",
            "gateway.endpoints[].connection.max_connections_per_ip",
            "gateway_pool.endpoints[].connection.max_connections",
            "gateway_pool.endpoints[].connection.max_connections_per_ip",
        ],
        why: "connection.pool.max_size bounds the connections to each endpoint",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &[
            "gateway_pool.load_balancer.retry_count",
            "gateway_pool.load_balancer.health_check_path",
        ],
        why: "a request already written is never sent again (the server may have acted on it); one not yet written goes to another endpoint at once, and an endpoint whose connection is lost, whose breaker is open or that stopped answering for failover_timeout is passed over until it is back",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &["gateway_pool.service_discovery"],
        why: "service discovery is not built; the endpoints are the ones listed",
        planned: GATEWAY_POOL,
        quiet: OFF,
    },
    Row {
        paths: &[
            "gateway.connection.buffer_size",
            "gateway.endpoints[].connection.buffer_size",
            "gateway_pool.endpoints[].connection.buffer_size",
        ],
        why: "buffers grow with each message; local.max_message_size is the limit",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &[
            "gateway.auth.per_message_cache",
            "gateway.endpoints[].auth.per_message_cache",
            "gateway_pool.endpoints[].auth.per_message_cache",
        ],
        why: "each message carries the connection's current token; there is nothing to cache",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &[
            "gateway.tls.enabled",
            "gateway.endpoints[].tls.enabled",
            "servers[].tls.enabled",
            "gateway_pool.endpoints[].tls.enabled",
        ],
        why: "the URL scheme chooses TLS (wss://, tcps://, https://)",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &[
            "gateway.tls.cert_file",
            "gateway.tls.key_file",
            "gateway.endpoints[].tls.cert_file",
            "gateway.endpoints[].tls.key_file",
            "servers[].tls.cert_file",
            "servers[].tls.key_file",
            "gateway_pool.endpoints[].tls.cert_file",
            "gateway_pool.endpoints[].tls.key_file",
        ],
        why: "the router's client certificate is tls.client_cert and tls.client_key",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &[
            "gateway.tls.client_auth",
            "gateway.endpoints[].tls.client_auth",
            "servers[].tls.client_auth",
            "gateway_pool.endpoints[].tls.client_auth",
        ],
        why: "which client certificates to accept is the server's choice; the router is the client",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &[
            "servers[].auth.client_id",
            "servers[].auth.client_secret_env",
            "servers[].auth.token_endpoint",
            "servers[].auth.scopes",
            "servers[].auth.scope",
            "servers[].auth.grant_type",
            "servers[].auth.username",
            "servers[].auth.password_env",
            "servers[].auth.per_message_auth",
            "servers[].auth.per_message_cache",
        ],
        why: "a direct server gets a bearer token from auth.token_env or auth.token_file only",
        planned: Some("OAuth for direct servers"),
        quiet: None,
    },
    Row {
        paths: &[
            "servers[].auth.token_secure_key",
            "servers[].auth.client_secret_secure_key",
            "servers[].auth.password_secure_key",
        ],
        why: "the secure token store is not built; use auth.token_env or auth.token_file",
        planned: Some("secure store"),
        quiet: None,
    },
    Row {
        paths: &["servers[].auth.client_cert", "servers[].auth.client_key"],
        why: "a direct server's client certificate is servers[].tls.client_cert and client_key",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &["direct_clients.enabled"],
        why: "direct servers cannot be switched off all at once; switch one off with enabled: false on its entry",
        planned: None,
        quiet: Some(("", true)),
    },
    Row {
        paths: &["direct_clients.auto_detection.enabled"],
        why: "auto-detection runs for every server with auto_detect: true; there is no global switch",
        planned: None,
        quiet: Some(("", true)),
    },
    Row {
        paths: &["direct_clients.auto_detection.preferred_order"],
        why: "candidates are probed in the order they are listed",
        planned: Some("auto-detection order"),
        quiet: None,
    },
    Row {
        paths: &["direct_clients.max_connections", "direct_clients.connection_pool"],
        why: "each server has one connection (or process); HTTP keeps its connections alive on its own",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &["direct_clients.fallback"],
        why: "the fallback is set per server: fallback: gateway on the server entry",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &["direct_clients.stdio"],
        why: "a stdio server takes env and cwd from its servers: entry; local.max_message_size bounds its messages",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &["direct_clients.websocket.handshake_timeout"],
        why: "direct_clients.default_timeout bounds the WebSocket connect, handshake included",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &[
            "direct_clients.websocket.max_message_size",
            "direct_clients.sse.buffer_size",
        ],
        why: "local.max_message_size is the limit for every transport",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &[
            "direct_clients.websocket.default_headers",
            "direct_clients.http.default_headers",
            "direct_clients.sse.default_headers",
        ],
        why: "headers are set per server (headers: on the server entry, or --header)",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &[
            "direct_clients.http.request_timeout",
            "direct_clients.sse.request_timeout",
        ],
        why: "local.request_timeout_ms bounds every request",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &["direct_clients.sse.stream_timeout"],
        why: "the SSE stream stays open until the server ends it, then is reopened",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &["direct_clients.http.max_idle_conns"],
        why: "the HTTP client keeps idle connections on its own",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &["direct_clients.http.follow_redirects"],
        why: "redirects are followed (up to 10) whatever this says",
        planned: None,
        quiet: Some(("", true)),
    },
    Row {
        paths: &[
            "direct_clients.memory_optimization",
            "direct_clients.websocket.performance",
            "direct_clients.http.performance",
            "direct_clients.sse.performance",
        ],
        why: "it tunes the Go runtime (object pools, GC), which has no counterpart here",
        planned: None,
        quiet: None,
    },
    Row {
        paths: &["advanced.compression"],
        why: "message compression is not built",
        planned: None,
        quiet: OFF,
    },
    Row {
        paths: &["advanced.deduplication"],
        why: "request deduplication is not built",
        planned: None,
        quiet: OFF,
    },
];

/// Keys whose value is a map of the user's own names (variables, headers, labels): the
/// key is named, not the names inside it.
pub(super) const FREE_FORM: &[&str] = &[
    "servers[].env",
    "servers[].headers",
    "metrics.labels",
    "direct_clients.stdio.default_env",
    "direct_clients.websocket.default_headers",
    "direct_clients.http.default_headers",
    "direct_clients.sse.default_headers",
];
