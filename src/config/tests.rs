//! Loader tests: the seed's file, both shapes, defaults, precedence, messages, secrets.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("mcp-router.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn opts(path: Option<PathBuf>, env: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        config_path: path,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        search_dirs: Vec::new(),
        flags: FlagOverrides::default(),
    }
}

fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, text);
    load(&opts(Some(path), env))
}

fn errors_of(text: &str, env: &[(&str, &str)]) -> String {
    load_text(text, env)
        .expect_err("should not load")
        .to_string()
}

const SEED: &str = include_str!("../../tests/golden/seed-full.yaml");

/// A note from `inert.rs` ("`key` is set but does nothing …").
fn is_inert_note(w: &str) -> bool {
    w.starts_with('`')
        && (w.contains(" is set but does nothing") || w.contains(" are set but do nothing"))
}

/// The gateway's endpoint URLs, in order.
fn urls(g: &GatewayConfig) -> Vec<&str> {
    g.endpoints.iter().map(|e| e.url.as_str()).collect()
}

/// How many warnings name `key` (backquoted, as the notes do).
fn named(warnings: &[String], key: &str) -> usize {
    let quoted = format!("`{key}`");
    warnings.iter().map(|w| w.matches(&quoted).count()).sum()
}

#[test]
fn the_seed_full_example_loads_unchanged() {
    let loaded = load_text(SEED, &[]).expect("seed example loads");
    // No unknown key, nothing risky: the only notes are for the seed's keys that do nothing
    // yet, each named once; the live ones it sets are not among them.
    assert!(
        loaded.warnings.iter().all(|w| is_inert_note(w)),
        "{:#?}",
        loaded.warnings
    );
    for key in [
        "metrics.enabled",
        "metrics.endpoint",
        "direct_clients.connection_pool.max_idle_connections",
        "direct_clients.memory_optimization.gc_config.gc_percent",
    ] {
        assert_eq!(
            named(&loaded.warnings, key),
            1,
            "{key}: {:#?}",
            loaded.warnings
        );
    }
    for key in [
        "direct_clients.enabled",
        "direct_clients.auto_detection.enabled",
        "direct_clients.auto_detection.timeout",
        "local.request_timeout_ms",
        "local.max_concurrent_requests",
        "gateway.connection.timeout_ms",
        "gateway.connection.pool.enabled",
        "gateway.connection.pool.health_check_interval_ms",
        "logging.output",
    ] {
        assert_eq!(
            named(&loaded.warnings, key),
            0,
            "{key}: {:#?}",
            loaded.warnings
        );
    }
    let c = loaded.config;
    assert_eq!(c.servers.len(), 1);
    assert_eq!(c.servers[0].name, "local-auto-detect");
    match &c.servers[0].target {
        ServerTarget::AutoDetect {
            candidates,
            fallback_gateway,
        } => {
            assert_eq!(candidates.len(), 3);
            assert!(fallback_gateway);
        }
        other => panic!("expected auto-detect, got {other:?}"),
    }
    let g = c.gateway.expect("gateway");
    assert_eq!(
        urls(&g),
        [
            "wss://mcp-gateway.example.com:8443",
            "tcps://mcp-gateway.example.com:8444"
        ]
    );
    assert_eq!(g.auth.token_env.as_deref(), Some("MCP_AUTH_TOKEN"));
    assert_eq!(
        g.pool.as_ref().map(|p| p.max_lifetime),
        Some(Duration::from_millis(1_800_000))
    );
    assert_eq!(g.tls.cipher_suites.len(), 2);
    assert!(g.tls.verify);
    assert_eq!(c.direct.auto_detection_timeout, Duration::from_secs(1));
    let rate = c.local.rate_limit.expect("the seed's rate limit is on");
    assert_eq!((rate.requests_per_second, rate.burst), (10.0, 20));
    assert_eq!(c.metrics.endpoint, "localhost:9091");
}

#[test]
fn the_go_shape_loads_too() {
    let text = r#"
direct:
  enabled: true
  default_timeout: 30s
  health_check: { enabled: true, interval: 30s, timeout: 5s }
  websocket: { handshake_timeout: 10s, ping_interval: 30s, max_message_size: 1048576 }
  http: { request_timeout: 30s, follow_redirects: true }
  sse: { stream_timeout: 300s }
  stdio: { process_timeout: 30s, performance: { enable_process_pooling: true } }
gateway_pool:
  default_namespace: default
  endpoints:
    - url: wss://a.example.com:8443
      weight: 2
      tags: [blue]
      auth: { type: bearer, token_env: TOKEN_A }
  load_balancer: { strategy: least_connections, failover_timeout: 5s }
  circuit_breaker: { enabled: true, failure_threshold: 5, recovery_timeout: 30s }
  namespace_routing:
    enabled: true
    rules: [{ pattern: "^github\\.", tags: [blue], priority: 1 }]
logging: { level: debug, format: text, include_caller: true, sampling: { enabled: false } }
advanced:
  compression: { enabled: true, algorithm: gzip, level: 6 }
  deduplication: { enabled: true, cache_size: 1000, ttl_seconds: 60 }
tracing: { enabled: false, service_name: mcp-router }
"#;
    let loaded = load_text(text, &[]).expect("Go shape loads");
    // Every key is known; the notes are only for the ones that do nothing yet.
    assert!(
        loaded.warnings.iter().all(|w| is_inert_note(w)),
        "{:#?}",
        loaded.warnings
    );
    assert_eq!(
        named(&loaded.warnings, "gateway_pool.load_balancer.strategy"),
        0
    );
    assert_eq!(
        named(
            &loaded.warnings,
            "gateway_pool.load_balancer.failover_timeout"
        ),
        0
    );
    assert_eq!(
        named(&loaded.warnings, "gateway_pool.circuit_breaker.enabled"),
        0
    );
    assert_eq!(
        named(&loaded.warnings, "gateway_pool.namespace_routing.enabled"),
        0
    );
    assert_eq!(named(&loaded.warnings, "gateway_pool.default_namespace"), 0);
    assert_eq!(named(&loaded.warnings, "direct_clients.default_timeout"), 0);
    assert_eq!(named(&loaded.warnings, "logging.include_caller"), 0);
    assert_eq!(loaded.config.logging.format, LogFormat::Text);
    assert!(loaded.config.logging.include_caller);
    assert!(loaded.config.gateway_pool.is_some());
}

#[test]
fn an_empty_file_gives_the_defaults() {
    for text in ["", "# only a comment\n"] {
        let c = load_text(text, &[]).expect("empty loads").config;
        assert_eq!(c.local.request_timeout, Duration::from_secs(30));
        assert_eq!(c.local.max_concurrent_requests, 100);
        assert_eq!(c.local.max_queued_requests, 100);
        assert_eq!(c.local.read_buffer_size, 65536);
        assert_eq!(c.logging.level, "info");
        assert_eq!(c.logging.format, LogFormat::Json);
        assert!(c.metrics.enabled);
        assert_eq!(c.metrics.endpoint, "localhost:9091");
        assert_eq!(c.metrics.path, "/metrics");
        assert!(c.direct.enabled && c.direct.auto_detection_enabled);
        assert_eq!(c.direct.auto_detection_timeout, Duration::from_secs(10));
        assert_eq!(c.direct.cache_ttl, Duration::from_secs(300));
        assert_eq!(
            c.direct.preferred_order,
            ["http", "websocket", "stdio", "sse"]
        );
        assert!(c.gateway.is_none() && c.servers.is_empty());
    }
}

#[test]
fn gateway_defaults_match_the_original() {
    let g = load_text("gateway: { url: wss://gw.example.com }\n", &[])
        .unwrap()
        .config
        .gateway
        .unwrap();
    assert_eq!(g.timeout, Duration::from_secs(5));
    assert_eq!(g.keepalive_interval, Duration::from_secs(30));
    assert_eq!(g.reconnect, ReconnectPolicy::default());
    assert_eq!(g.protocol_preference, "websocket");
    assert_eq!(g.auth_type, "bearer");
    assert!(g.tls.verify);
    assert_eq!(g.tls.min_version, "1.3");
}

#[test]
fn a_missing_default_file_is_zero_config_and_a_missing_explicit_one_is_an_error() {
    let empty = tempfile::tempdir().unwrap();
    let mut o = opts(None, &[]);
    o.search_dirs = vec![empty.path().to_path_buf()];
    let loaded = load(&o).expect("no file is fine");
    assert!(loaded.source.is_none());

    let err = load(&opts(Some(empty.path().join("nope.yaml")), &[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope.yaml") && err.contains("cannot be read"),
        "{err}"
    );

    let err = load(&opts(
        None,
        &[("MCP_ROUTER_CONFIG", "/definitely/missing.yaml")],
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("MCP_ROUTER_CONFIG /definitely/missing.yaml"),
        "{err}"
    );
}

#[test]
fn the_search_path_finds_the_first_file() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(&b, "logging: { level: debug }\n");
    let mut o = opts(None, &[]);
    o.search_dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
    let loaded = load(&o).unwrap();
    assert_eq!(loaded.source, Some(b.path().join("mcp-router.yaml")));
    assert_eq!(loaded.config.logging.level, "debug");
}

#[test]
fn env_beats_file_and_flags_beat_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "logging: { level: debug }\nlocal: { request_timeout_ms: 1000 }\n",
    );
    let file_only = load(&opts(Some(path.clone()), &[])).unwrap().config;
    assert_eq!(file_only.logging.level, "debug");

    let env = [
        ("MCP_LOGGING_LEVEL", "warn"),
        ("MCP_LOCAL_REQUEST_TIMEOUT_MS", "250"),
    ];
    let with_env = load(&opts(Some(path.clone()), &env)).unwrap().config;
    assert_eq!(with_env.logging.level, "warn");
    assert_eq!(with_env.local.request_timeout, Duration::from_millis(250));

    let mut o = opts(Some(path), &env);
    o.flags.log_level = Some("error".into());
    o.flags.gateway_url = Some("wss://flag.example.com".into());
    let with_flags = load(&o).unwrap().config;
    assert_eq!(with_flags.logging.level, "error");
    assert_eq!(
        urls(&with_flags.gateway.unwrap()),
        ["wss://flag.example.com"]
    );
}

#[test]
fn seed_env_names_work() {
    let env = [
        ("MCP_GATEWAY_URL", "wss://gw.example.com"),
        ("MCP_METRICS_PORT", "9999"),
        ("MCP_OBSERVABILITY_ENABLED", "false"),
        ("MCP_AUTO_DETECT_PROTOCOLS", "false"),
        ("MCP_DIRECT_CLIENTS_ENABLED", "true"),
        ("MCP_CONNECTION_POOLING_ENABLED", "true"),
        ("MCP_MEMORY_OPTIMIZATION_ENABLED", "true"),
        ("MCP_LOAD_BALANCER_STRATEGY", "priority"),
        ("MCP_DIRECT_AUTO_DETECTION_TIMEOUT", "2s"),
    ];
    let c = load_text("metrics: { endpoint: 127.0.0.1:9091 }\n", &env)
        .unwrap()
        .config;
    assert_eq!(urls(&c.gateway.unwrap()), ["wss://gw.example.com"]);
    assert_eq!(c.metrics.endpoint, "127.0.0.1:9999");
    assert!(!c.metrics.enabled);
    assert!(!c.direct.auto_detection_enabled);
    assert_eq!(c.direct.auto_detection_timeout, Duration::from_secs(2));
}

#[test]
fn a_bad_env_value_names_the_variable() {
    let err = errors_of(
        "",
        &[
            ("MCP_LOCAL_REQUEST_TIMEOUT_MS", "soon"),
            ("MCP_METRICS_ENABLED", "maybe"),
        ],
    );
    assert!(
        err.contains("MCP_LOCAL_REQUEST_TIMEOUT_MS='soon'") && err.contains("whole number"),
        "{err}"
    );
    assert!(
        err.contains("MCP_METRICS_ENABLED='maybe'") && err.contains("true or false"),
        "{err}"
    );
}

#[test]
fn validation_names_the_key_the_value_and_what_is_allowed() {
    let err = errors_of(
        r#"
logging: { level: loud, format: xml }
gateway: { url: "http://gw.example.com", protocol_preference: carrier-pigeon, tls: { min_version: "1.1", cipher_suites: [TLS_RSA_WITH_RC4_128_SHA] } }
local: { request_timeout_ms: 0, rate_limit: { enabled: true } }
servers:
  - { name: a, command: "" }
  - { name: a, url: "ftp://x" }
  - { command: echo, url: "ws://x" }
  - { name: d, connection_mode: sideways, command: echo }
metrics: { endpoint: "no-port" }
"#,
        &[],
    );
    for needle in [
        "logging.level: 'loud' is not one of trace, debug, info, warn, error",
        "logging.format: 'xml' is not one of json, text",
        "gateway.url: scheme 'http' is not supported (use ws://, wss://, tcp://, tcps://, tcp+tls://)",
        "gateway.protocol_preference: 'carrier-pigeon' is not one of websocket, tcp",
        "gateway.tls.min_version: '1.1' is not one of 1.2, 1.3",
        "gateway.tls.cipher_suites[0]: unknown cipher suite 'TLS_RSA_WITH_RC4_128_SHA'",
        "local.request_timeout_ms: 0 is not allowed",
        "local.rate_limit.requests_per_second: is required when the rate limit is enabled",
        "servers[0].command: is empty",
        "servers[1].url: scheme 'ftp' is not supported",
        "servers[1].name: 'a' is also the name of servers[0]: names must be unique among enabled servers",
        "servers[2]: set only one of command, url",
        "servers[2].name: is missing",
        "servers[3].connection_mode: 'sideways' is not one of direct, gateway",
        "metrics.endpoint: 'no-port' is not host:port",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn a_type_error_names_the_key_and_line() {
    let err = errors_of("version: 1\nlocal:\n  request_timeout_ms: soon\n", &[]);
    assert!(
        err.contains("local.request_timeout_ms") && err.contains("line 3"),
        "{err}"
    );
    let err = errors_of("servers: [\n", &[]);
    assert!(err.contains("line"), "{err}");
}

#[test]
fn unknown_keys_warn_with_the_nearest_name() {
    let loaded = load_text(
        "gateway:\n  url: wss://gw.example.com\n  connection: { timout_ms: 5 }\nservers:\n  - { name: a, comand: echo, command: echo }\nloging: { level: info }\nzzz_totally_unrelated: 1\n",
        &[],
    )
    .unwrap();
    let w = loaded.warnings.join("\n");
    assert!(w.contains("unknown key 'gateway.connection.timout_ms' is ignored; did you mean 'gateway.connection.timeout_ms'?"), "{w}");
    assert!(
        w.contains("'servers[].comand' is ignored; did you mean 'servers[].command'?"),
        "{w}"
    );
    assert!(
        w.contains("'loging' is ignored; did you mean 'logging'?"),
        "{w}"
    );
    assert!(
        w.contains("unknown key 'zzz_totally_unrelated' is ignored\n")
            || w.ends_with("unknown key 'zzz_totally_unrelated' is ignored"),
        "{w}"
    );
}

#[test]
fn a_mistyped_env_name_gets_a_hint_and_others_are_left_alone() {
    let loaded = load_text(
        "",
        &[("MCP_LOGGING_LEVL", "debug"), ("MCP_TIMEOUT", "5000")],
    )
    .unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0]
        .contains("MCP_LOGGING_LEVL is not used; did you mean MCP_LOGGING_LEVEL?"));
}

#[test]
fn secrets_never_reach_output() {
    let token = "tok-3f9a1c-very-secret";
    let loaded = load_text(
        "servers:\n  - name: s\n    command: [server, --port, '1']\n    env: { API_KEY: sk-live-abcdef }\n",
        &[("MCP_AUTH_TOKEN", token), ("MCP_CLIENT_SECRET", "cs-123456"), ("MCP_OAUTH_PASSWORD", "pw-7890")],
    )
    .unwrap();
    assert_eq!(
        loaded
            .config
            .secrets
            .auth_token
            .as_ref()
            .map(Secret::expose),
        Some(token)
    );
    let shown = render_effective(&loaded.config);
    let debug = format!("{:?}", loaded.config.secrets);
    for secret in [token, "cs-123456", "pw-7890", "sk-live-abcdef"] {
        assert!(!shown.contains(secret), "{secret} in:\n{shown}");
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(
        shown.contains("API_KEY: '***'") && shown.contains("auth_token: '***'"),
        "{shown}"
    );
    assert!(
        shown.contains("- server\n") && shown.contains("- --port"),
        "{shown}"
    );
}

#[test]
fn a_secret_env_value_is_never_echoed_in_an_error() {
    let err = errors_of(
        "logging: { level: nope }\n",
        &[("MCP_AUTH_TOKEN", "tok-should-not-appear")],
    );
    assert!(!err.contains("tok-should-not-appear"), "{err}");
}

#[test]
fn the_command_flag_replaces_the_servers() {
    let mut o = opts(None, &[]);
    o.flags.stdio_command = Some(vec![
        "/usr/bin/python3".into(),
        "server.py".into(),
        "--flag".into(),
    ]);
    let c = load(&o).unwrap().config;
    assert_eq!(c.servers.len(), 1);
    assert_eq!(c.servers[0].name, "python3");
    match &c.servers[0].target {
        ServerTarget::Stdio(cmd) => {
            assert_eq!(cmd.program, "/usr/bin/python3");
            assert_eq!(cmd.args, ["server.py", "--flag"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn command_lines_split_like_a_shell_and_args_append() {
    let c = load_text(
        "servers:\n  - { name: s, command: \"python 'my server.py'\", args: [--x], cwd: /tmp }\n",
        &[],
    )
    .unwrap()
    .config;
    match &c.servers[0].target {
        ServerTarget::Stdio(cmd) => {
            assert_eq!(cmd.program, "python");
            assert_eq!(cmd.args, ["my server.py", "--x"]);
            assert_eq!(cmd.cwd.as_deref(), Some(std::path::Path::new("/tmp")));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tls_verify_off_is_a_warning() {
    let loaded = load_text("gateway: { url: wss://gw, tls: { verify: false } }\n", &[]).unwrap();
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.contains("gateway.tls.verify: false")));
}

#[test]
fn every_known_path_is_reachable_by_suggestion_machinery() {
    let known = raw::RawConfig::known_paths();
    for p in [
        "servers[].command",
        "gateway.tls.cipher_suites",
        "direct_clients.auto_detection.cache_ttl",
        "local.rate_limit.burst",
        "advanced.debug.pprof_port",
    ] {
        assert!(known.iter().any(|k| k == p), "{p} missing from {known:?}");
    }
}

#[test]
fn the_readme_documents_every_environment_variable() {
    let readme = include_str!("../../README.md");
    for var in ENV_VARS {
        assert!(
            readme.contains(&format!("`{}`", var.name)),
            "README does not list {}",
            var.name
        );
    }
}

#[test]
fn pool_and_endpoint_entries_are_validated_like_the_gateway() {
    let err = errors_of(
        "gateway:\n  endpoints: [{ url: \"https://x\" }, { auth: { type: oauth2 } }]\ngateway_pool:\n  endpoints: [{ url: \"wss://ok\", tls: { min_version: \"1.0\" } }]\n  load_balancer: { strategy: random }\n",
        &[],
    );
    for needle in [
        "gateway.endpoints[0].url: scheme 'https' is not supported",
        "gateway.endpoints[1].url: is missing",
        "gateway.endpoints[1].auth.client_id: is required for oauth2",
        "gateway.endpoints[1].auth.token_endpoint: is required for oauth2",
        "gateway_pool.endpoints[0].tls.min_version: '1.0' is not one of 1.2, 1.3",
        "gateway_pool.load_balancer.strategy: 'random' is not one of round_robin, least_connections, weighted, priority",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn a_lone_url_after_the_dashes_is_a_network_server() {
    let mut o = opts(None, &[]);
    o.flags.stdio_command = Some(vec!["https://user@mcp.example.com:8443/mcp?x=1".into()]);
    let c = load(&o).unwrap().config;
    assert_eq!(c.servers[0].name, "mcp.example.com:8443");
    match &c.servers[0].target {
        ServerTarget::AutoDetect {
            candidates,
            fallback_gateway,
        } => {
            assert_eq!(candidates, &["https://user@mcp.example.com:8443/mcp?x=1"]);
            assert!(!fallback_gateway);
        }
        other => panic!("{other:?}"),
    }
    o.flags.stdio_command = Some(vec!["wss://ws.example.com/mcp".into()]);
    let c = load(&o).unwrap().config;
    assert!(
        matches!(&c.servers[0].target, ServerTarget::Url(u) if u == "wss://ws.example.com/mcp")
    );
}

#[test]
fn gateway_extensions_and_the_go_pool_shape() {
    let c = load_text(
        "gateway:\n  url: tcp://gw:8444\n  framing: legacy\n  tcp_notifications: true\n",
        &[],
    )
    .unwrap()
    .config;
    let g = c.gateway.expect("gateway");
    assert_eq!((g.framing.as_str(), g.tcp_notifications), ("legacy", true));
    assert_eq!(g.default_namespace, "default");
    let e = errors_of("gateway:\n  url: tcp://gw\n  framing: mcp\n", &[]);
    assert!(e.contains("gateway.framing") && e.contains("legacy"), "{e}");
    // The Go router's `gateway_pool:` alone is a gateway too, with its namespace.
    let c = load_text(
        "gateway_pool:\n  default_namespace: tools\n  endpoints:\n    - url: wss://a:8443\n      auth:\n        type: bearer\n        token_env: GW_TOKEN\n    - url: tcps://b:8444\n",
        &[],
    )
    .unwrap()
    .config;
    let g = c.gateway.expect("gateway from gateway_pool");
    assert_eq!(urls(&g), ["wss://a:8443", "tcps://b:8444"]);
    assert_eq!(g.default_namespace, "tools");
    assert_eq!(g.auth.token_env.as_deref(), Some("GW_TOKEN"));
}

#[test]
fn routing_a_server_through_the_gateway_needs_a_gateway() {
    let e = errors_of("servers:\n  - name: a\n    connection_mode: gateway\n", &[]);
    assert!(
        e.contains("servers[0]") && e.contains("set gateway.url"),
        "{e}"
    );
    let e = errors_of(
        "servers:\n  - name: a\n    auto_detect: true\n    candidates: [\"ws://x\"]\n    fallback: gateway\n",
        &[],
    );
    assert!(e.contains("no gateway is configured"), "{e}");
    assert!(load_text(
        "gateway:\n  url: wss://gw\nservers:\n  - name: a\n    connection_mode: gateway\n",
        &[]
    )
    .is_ok());
}

#[test]
fn config_check_masks_gateway_endpoint_userinfo_and_query() {
    let loaded = load_text(
        "gateway:\n  url: wss://ops:hunter2@gw.example.com:8443/mcp?token=SECRET-Q\n  auth: { type: bearer }\n",
        &[("MCP_AUTH_TOKEN", "t")],
    )
    .unwrap();
    let shown = render_effective(&loaded.config);
    assert!(
        !shown.contains("SECRET-Q") && !shown.contains("hunter2"),
        "{shown}"
    );
    assert!(shown.contains("gw.example.com:8443/mcp"), "{shown}");
}
