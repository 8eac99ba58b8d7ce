//! The inert-key table against the schema (every key is live or covered, never both) and
//! the notes `load` gives for what a user set.

use super::*;
use crate::config::{load, FlagOverrides, LoadOptions};

/// Keys that code outside `config/` reads (the audit behind the table), as schema paths; a
/// key counts with everything under it. The ones marked "soon" are read by the change
/// being made alongside this table: they must never be reported as doing nothing.
const LIVE: &[&str] = &[
    "version",
    "servers[].name",
    // Aggregation: `upstream::spec` skips disabled servers and reads the transport; the
    // routing core reads the prefix, the filters and the separator.
    "servers[].enabled",
    "servers[].prefix",
    "servers[].transport",
    "servers[].tools",
    "servers[].prompts",
    "servers[].resources",
    // Resilience: `cli::run` sets each upstream's admission from these.
    "servers[].max_concurrent_requests",
    "servers[].rate_limit",
    "local.rate_limit",
    // `upstream::spec` gives a server its breaker; the gateway's lanes come from its
    // endpoints (each with its own settings), `gateway_pool`'s balancing, breaker and
    // namespace rules, and each endpoint's pool.
    "servers[].circuit_breaker",
    "advanced.circuit_breaker.failure_threshold",
    "advanced.circuit_breaker.success_threshold",
    "advanced.circuit_breaker.timeout_seconds",
    "advanced.circuit_breaker.interval_seconds",
    "gateway.endpoints[].connection.pool",
    "gateway.endpoints[].auth.type",
    "gateway.endpoints[].auth.token_env",
    "gateway.endpoints[].auth.token_file",
    "gateway.endpoints[].auth.token_secure_key",
    "gateway.endpoints[].auth.client_id",
    "gateway.endpoints[].auth.client_secret_env",
    "gateway.endpoints[].auth.client_secret_secure_key",
    "gateway.endpoints[].auth.token_endpoint",
    "gateway.endpoints[].auth.scopes",
    "gateway.endpoints[].auth.scope",
    "gateway.endpoints[].auth.grant_type",
    "gateway.endpoints[].auth.username",
    "gateway.endpoints[].auth.password_env",
    "gateway.endpoints[].auth.password_secure_key",
    "gateway.endpoints[].auth.client_cert",
    "gateway.endpoints[].auth.client_key",
    "gateway.endpoints[].auth.per_message_auth",
    "gateway.endpoints[].connection.timeout_ms",
    "gateway.endpoints[].connection.keepalive_interval_ms",
    "gateway.endpoints[].connection.reconnect",
    "gateway.endpoints[].tls.verify",
    "gateway.endpoints[].tls.ca_cert_path",
    "gateway.endpoints[].tls.min_version",
    "gateway.endpoints[].tls.cipher_suites",
    "gateway.endpoints[].tls.client_cert",
    "gateway.endpoints[].tls.client_key",
    "gateway.endpoints[].tls.pinned_spki_sha256",
    "gateway.endpoints[].weight",
    "gateway.endpoints[].priority",
    "gateway.endpoints[].tags",
    "gateway.connection.pool",
    "gateway_pool.endpoints[].connection.pool",
    "gateway_pool.endpoints[].weight",
    "gateway_pool.endpoints[].priority",
    "gateway_pool.endpoints[].tags",
    "gateway_pool.load_balancer.strategy",
    "gateway_pool.load_balancer.failover_timeout",
    "gateway_pool.circuit_breaker",
    "gateway_pool.namespace_routing",
    "servers_from",
    "aggregate.separator",
    "servers[].connection_mode",
    "servers[].command",
    "servers[].args",
    "servers[].env",
    "servers[].cwd",
    "servers[].url",
    "servers[].auto_detect",
    "servers[].candidates",
    "servers[].fallback",
    "servers[].headers",
    "servers[].reconnect",
    "servers[].auth.type",
    "servers[].auth.token_env",
    "servers[].auth.token_file",
    "servers[].tls.verify",
    "servers[].tls.ca_cert_path",
    "servers[].tls.min_version",
    "servers[].tls.cipher_suites",
    "servers[].tls.client_cert",
    "servers[].tls.client_key",
    "servers[].tls.pinned_spki_sha256",
    "gateway.url",
    "gateway.endpoints[].url",
    "gateway.protocol_preference",
    "gateway.auto_select",
    "gateway.auth.type",
    "gateway.auth.token_env",
    "gateway.auth.token_file",
    "gateway.auth.token_secure_key",
    "gateway.auth.client_id",
    "gateway.auth.client_secret_env",
    "gateway.auth.client_secret_secure_key",
    "gateway.auth.token_endpoint",
    "gateway.auth.scopes",
    "gateway.auth.scope",
    "gateway.auth.grant_type",
    "gateway.auth.username",
    "gateway.auth.password_env",
    "gateway.auth.password_secure_key",
    "gateway.auth.client_cert",
    "gateway.auth.client_key",
    "gateway.auth.per_message_auth",
    "gateway.connection.timeout_ms",
    "gateway.connection.keepalive_interval_ms",
    "gateway.connection.reconnect",
    "gateway.tls.verify",
    "gateway.tls.ca_cert_path",
    "gateway.tls.min_version",
    "gateway.tls.cipher_suites",
    "gateway.tls.client_cert",
    "gateway.tls.client_key",
    "gateway.tls.pinned_spki_sha256",
    "gateway.framing",
    "gateway.tcp_notifications",
    // Without `gateway:`, the endpoints, each with its own auth, connection and TLS.
    "gateway_pool.endpoints[].url",
    "gateway_pool.endpoints[].auth.type",
    "gateway_pool.endpoints[].auth.token_env",
    "gateway_pool.endpoints[].auth.token_file",
    "gateway_pool.endpoints[].auth.token_secure_key",
    "gateway_pool.endpoints[].auth.client_id",
    "gateway_pool.endpoints[].auth.client_secret_env",
    "gateway_pool.endpoints[].auth.client_secret_secure_key",
    "gateway_pool.endpoints[].auth.token_endpoint",
    "gateway_pool.endpoints[].auth.scopes",
    "gateway_pool.endpoints[].auth.scope",
    "gateway_pool.endpoints[].auth.grant_type",
    "gateway_pool.endpoints[].auth.username",
    "gateway_pool.endpoints[].auth.password_env",
    "gateway_pool.endpoints[].auth.password_secure_key",
    "gateway_pool.endpoints[].auth.client_cert",
    "gateway_pool.endpoints[].auth.client_key",
    "gateway_pool.endpoints[].auth.per_message_auth",
    "gateway_pool.endpoints[].connection.timeout_ms",
    "gateway_pool.endpoints[].connection.keepalive_interval_ms",
    "gateway_pool.endpoints[].connection.reconnect",
    "gateway_pool.endpoints[].tls.verify",
    "gateway_pool.endpoints[].tls.ca_cert_path",
    "gateway_pool.endpoints[].tls.min_version",
    "gateway_pool.endpoints[].tls.cipher_suites",
    "gateway_pool.endpoints[].tls.client_cert",
    "gateway_pool.endpoints[].tls.client_key",
    "gateway_pool.endpoints[].tls.pinned_spki_sha256",
    "gateway_pool.default_namespace",
    "direct_clients.default_timeout",
    "direct_clients.auto_detection.timeout",
    "direct_clients.auto_detection.cache_results",
    "direct_clients.auto_detection.cache_ttl",
    "direct_clients.websocket.ping_interval",
    // soon
    "direct_clients.websocket.pong_timeout",
    "local.request_timeout_ms",
    "local.max_queued_requests",
    "local.max_message_size",
    "local.shutdown_grace_ms",
    "local.read_buffer_size",
    "local.write_buffer_size",
    // soon
    "local.max_concurrent_requests",
    "logging.level",
    "logging.format",
    "logging.output",
    "logging.include_caller",
];

/// Schema keys with nothing under them (`gateway.tls.verify`, not `gateway.tls`).
fn schema_leaves() -> Vec<String> {
    let known = RawConfig::known_paths();
    known
        .iter()
        .filter(|k| {
            !known
                .iter()
                .any(|other| other.len() > k.len() && is_under(other, k))
        })
        .cloned()
        .collect()
}

fn covered_by_table(pattern: &str) -> bool {
    ROWS.iter()
        .any(|row| row.paths.iter().any(|p| is_under(pattern, p)))
}

#[test]
fn every_schema_key_is_live_or_in_the_table_and_never_both() {
    let mut unclassified = Vec::new();
    let mut both = Vec::new();
    for key in schema_leaves() {
        let live = LIVE.iter().any(|l| is_under(&key, l));
        match (live, covered_by_table(&key)) {
            (false, false) => unclassified.push(key),
            (true, true) => both.push(key),
            _ => {}
        }
    }
    assert!(
        unclassified.is_empty(),
        "keys neither read outside config/ (LIVE) nor in the inert table: {unclassified:?}"
    );
    assert!(both.is_empty(), "live keys the table calls inert: {both:?}");
}

#[test]
fn every_table_path_is_a_schema_key() {
    let known = RawConfig::known_paths();
    for path in ROWS.iter().flat_map(|r| r.paths).chain(FREE_FORM) {
        assert!(
            known.iter().any(|k| k == path),
            "{path} is not in the schema"
        );
    }
    for path in LIVE {
        assert!(
            known.iter().any(|k| k == path),
            "{path} is not in the schema"
        );
    }
}

fn notes_for(text: &str, env: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcp-router.yaml");
    std::fs::write(&path, text).unwrap();
    let opts = LoadOptions {
        config_path: Some(path),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        search_dirs: Vec::new(),
        flags: FlagOverrides::default(),
    };
    load(&opts).expect("loads").warnings
}

/// How many notes name `key` (backquoted, so `metrics.enabled` is not found inside
/// `x.metrics.enabled`).
fn named(notes: &[String], key: &str) -> usize {
    let quoted = format!("`{key}`");
    notes.iter().map(|n| n.matches(&quoted).count()).sum()
}

#[test]
fn defaults_and_live_keys_give_no_note() {
    assert!(notes_for("", &[]).is_empty());
    let live = "
servers:
  - name: s
    command: python server.py
    env: { A: b }
    reconnect: { initial_delay_ms: 10 }
    prefix: s1
    tools: { allow: [read_*], deny: [read_secret] }
    prompts: { deny: [\"*\"] }
    resources: { allow: [\"file://*\"] }
  - name: off
    enabled: false
    url: https://h/sse
    transport: streamable-http
aggregate: { separator: \"-\" }
local: { request_timeout_ms: 1000, max_concurrent_requests: 5, max_queued_requests: 5,
         max_message_size: 4096, shutdown_grace_ms: 10, read_buffer_size: 4096, write_buffer_size: 4096 }
direct_clients:
  default_timeout: 3s
  auto_detection: { timeout: 1s, cache_results: false, cache_ttl: 1m }
  websocket: { ping_interval: 10s, pong_timeout: 5s }
logging: { level: debug, format: text, include_caller: true }
";
    let notes = notes_for(live, &[]);
    assert!(notes.is_empty(), "{notes:#?}");
}

#[test]
fn each_inert_key_set_is_named_once_with_why_and_what_brings_it() {
    let text = "
tracing: { enabled: true, service_name: r }
metrics: { enabled: true, endpoint: localhost:9999 }
local: { request_timeout_ms: 1000 }
gateway:
  url: wss://gw.example.com
  connection: { timeout_ms: 100, pool: { enabled: true, max_size: 4 } }
gateway_pool:
  load_balancer: { strategy: weighted }
direct_clients:
  websocket: { handshake_timeout: 3s, max_message_size: 1024, ping_interval: 10s }
  memory_optimization: { enable_object_pooling: true }
advanced:
  compression: { enabled: true }
";
    let notes = notes_for(text, &[]);
    for key in [
        "tracing.enabled",
        "tracing.service_name",
        "metrics.enabled",
        "metrics.endpoint",
        "direct_clients.websocket.handshake_timeout",
        "direct_clients.websocket.max_message_size",
        "direct_clients.memory_optimization.enable_object_pooling",
        "advanced.compression.enabled",
    ] {
        assert_eq!(named(&notes, key), 1, "{key}: {notes:#?}");
    }
    for key in [
        "local.request_timeout_ms",
        "gateway.url",
        "gateway.connection.timeout_ms",
        "gateway.connection.pool.enabled",
        "gateway.connection.pool.max_size",
        "gateway_pool.load_balancer.strategy",
        "direct_clients.websocket.ping_interval",
    ] {
        assert_eq!(named(&notes, key), 0, "{key}: {notes:#?}");
    }
    let tracing = notes
        .iter()
        .find(|n| n.contains("`tracing.enabled`"))
        .unwrap();
    assert_eq!(
        tracing,
        "`tracing.enabled`, `tracing.service_name` are set but do nothing yet: tracing export (OpenTelemetry) is not built (planned: operations)"
    );
    let go = notes
        .iter()
        .find(|n| n.contains("memory_optimization"))
        .unwrap();
    assert!(
        go.ends_with("is set but does nothing: it tunes the Go runtime (object pools, GC), which has no counterpart here"),
        "{go}"
    );
}

#[test]
fn keys_set_through_the_environment_count_too() {
    let notes = notes_for(
        "",
        &[
            ("MCP_TRACING_ENABLED", "true"),
            ("MCP_METRICS_PORT", "9100"),
            ("MCP_LOCAL_REQUEST_TIMEOUT_MS", "500"),
        ],
    );
    assert_eq!(named(&notes, "tracing.enabled"), 1, "{notes:#?}");
    assert_eq!(named(&notes, "metrics.endpoint"), 1, "{notes:#?}");
    assert_eq!(named(&notes, "local.request_timeout_ms"), 0, "{notes:#?}");
}

#[test]
fn a_setting_that_asks_for_what_happens_anyway_is_quiet() {
    let quiet = "
tracing: { enabled: false, service_name: r }
metrics: { enabled: false, endpoint: localhost:9999 }
direct_clients: { enabled: true, auto_detection: { enabled: true } }
gateway_pool:
  endpoints:
    - url: wss://a.example.com
      connection: { pool: { enabled: false, max_size: 3 } }
";
    let notes = notes_for(quiet, &[]);
    assert!(notes.is_empty(), "{notes:#?}");
    // The opposite values ask for something that does not happen.
    let loud = "
direct_clients: { enabled: false, auto_detection: { enabled: false } }
gateway_pool:
  endpoints:
    - url: wss://a.example.com
      connection: { pool: { enabled: true } }
";
    let notes = notes_for(loud, &[]);
    for key in [
        "direct_clients.enabled",
        "direct_clients.auto_detection.enabled",
    ] {
        assert_eq!(named(&notes, key), 1, "{key}: {notes:#?}");
    }
}

#[test]
fn server_keys_its_kind_does_not_use_are_named_and_header_names_are_not() {
    let text = "
servers:
  - name: local
    command: python server.py
    headers: { X-Private-Name: v }
    tls: { enabled: true }
  - name: remote
    url: https://mcp.example.com/mcp
    env: { A: b }
    candidates: [\"python x.py\"]
    headers: { X-Team: t }
";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcp-router.yaml");
    std::fs::write(&path, text).unwrap();
    let notes = load(&LoadOptions {
        config_path: Some(path),
        ..LoadOptions::default()
    })
    .expect("loads")
    .warnings;
    for key in [
        "servers[0].headers",
        "servers[0].tls.enabled",
        "servers[1].env",
        "servers[1].candidates",
    ] {
        assert_eq!(named(&notes, key), 1, "{key}: {notes:#?}");
    }
    // The remote server's headers are used; a map's own names are the user's, not keys.
    assert_eq!(named(&notes, "servers[1].headers"), 0, "{notes:#?}");
    assert!(
        notes.iter().all(|n| !n.contains("X-Private-Name")),
        "{notes:#?}"
    );
    let local = notes
        .iter()
        .find(|n| n.contains("`servers[0].headers`"))
        .unwrap();
    assert!(local.contains("local command (stdio)"), "{local}");
}

#[test]
fn a_gateway_mode_server_uses_the_gateway_settings_only() {
    let notes = notes_for(
        "
gateway: { url: wss://gw.example.com }
servers:
  - name: via
    connection_mode: gateway
    reconnect: { initial_delay_ms: 5 }
",
        &[],
    );
    assert_eq!(named(&notes, "servers[0].reconnect.initial_delay_ms"), 1);
    assert_eq!(named(&notes, "servers[0].name"), 0);
    assert_eq!(named(&notes, "servers[0].connection_mode"), 0);
}

#[test]
fn every_endpoints_own_reconnect_policy_is_live() {
    let notes = notes_for(
        "
gateway:
  url: wss://gw.example.com
  endpoints:
    - url: wss://e.example.com
      connection: { timeout_ms: 100, reconnect: { max_attempts: 2 } }
",
        &[],
    );
    assert_eq!(
        named(
            &notes,
            "gateway.endpoints[0].connection.reconnect.max_attempts"
        ),
        0,
        "{notes:#?}"
    );
    let notes = notes_for(
        "
gateway_pool:
  endpoints:
    - url: wss://a.example.com
    - url: wss://b.example.com
      connection: { timeout_ms: 100, reconnect: { jitter: 0 } }
",
        &[],
    );
    assert_eq!(
        named(
            &notes,
            "gateway_pool.endpoints[1].connection.reconnect.jitter"
        ),
        0,
        "{notes:#?}"
    );
}

#[test]
fn gateway_pool_endpoints_past_the_first_and_under_a_gateway_are_named() {
    let pool = "
gateway_pool:
  endpoints:
    - url: wss://a.example.com
      auth: { token_env: A }
    - url: wss://b.example.com
      auth: { token_env: B }
      weight: 2
";
    let notes = notes_for(pool, &[]);
    // Every endpoint uses its own settings.
    assert_eq!(named(&notes, "gateway_pool.endpoints[0].auth.token_env"), 0);
    assert_eq!(named(&notes, "gateway_pool.endpoints[1].auth.token_env"), 0);
    assert_eq!(named(&notes, "gateway_pool.endpoints[1].weight"), 0);
    let both = format!("gateway: {{ url: wss://gw.example.com }}\n{pool}");
    let notes = notes_for(&both, &[]);
    assert_eq!(
        named(&notes, "gateway_pool.endpoints[0].url"),
        1,
        "{notes:#?}"
    );
    assert_eq!(named(&notes, "gateway.url"), 0, "{notes:#?}");
}

#[test]
fn env_docs_and_the_readme_say_when_a_variable_does_nothing() {
    let readme = include_str!("../../../README.md");
    for var in crate::config::ENV_VARS {
        if matches!(var.kind, crate::config::EnvKind::Secret) || !var.path.contains('.') {
            continue;
        }
        let inert = covered_by_table(var.path);
        assert_eq!(
            var.doc.contains("does nothing"),
            inert,
            "{}: its doc must say 'does nothing' exactly when {} is in the inert table",
            var.name,
            var.path
        );
        let row = format!("| `{}` | `{}`: {} |", var.name, var.path, var.doc);
        assert!(readme.contains(&row), "README's row must read: {row}");
    }
}
