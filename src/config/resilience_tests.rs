//! The resilience settings: rate limits, per-server concurrency, circuit breakers (and
//! `advanced.circuit_breaker` as their shared values), the gateway connection pool, the
//! endpoints with their resolved settings, the load balancer, namespace routing and the
//! `reconnect.*` rules wherever a policy is written; defaults, environment, messages.

use std::time::Duration;

use super::*;

fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcp-router.yaml");
    std::fs::write(&path, text).unwrap();
    load(&LoadOptions {
        config_path: Some(path),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        search_dirs: Vec::new(),
        flags: FlagOverrides::default(),
    })
}

fn config(text: &str) -> Config {
    load_text(text, &[]).expect("loads").config
}

fn errors_of(text: &str) -> String {
    load_text(text, &[])
        .expect_err("should not load")
        .to_string()
}

fn assert_all(err: &str, needles: &[&str]) {
    for needle in needles {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

fn gateway(text: &str) -> GatewayConfig {
    config(text).gateway.expect("a gateway")
}

const SEED: &str = include_str!("../../tests/golden/seed-full.yaml");

#[test]
fn nothing_written_is_the_documented_defaults() {
    let c = config("gateway: { url: wss://gw.example.com }\n");
    assert!(c.local.rate_limit.is_none());
    let g = c.gateway.unwrap();
    assert_eq!(g.pool, Some(PoolConfig::default()));
    let pool = PoolConfig::default();
    assert_eq!((pool.min_size, pool.max_size), (2, 10));
    assert_eq!(pool.max_idle_time, Duration::from_millis(300_000));
    assert_eq!(pool.max_lifetime, Duration::from_millis(1_800_000));
    assert_eq!(pool.acquire_timeout, Duration::from_millis(5_000));
    assert_eq!(pool.health_check_interval, Duration::from_millis(30_000));
    assert_eq!(g.load_balancer.strategy, Strategy::RoundRobin);
    assert_eq!(g.load_balancer.failover_timeout, Duration::from_secs(30));
    assert_eq!(g.load_balancer.retry_count, 3);
    assert!(g.circuit_breaker.is_none() && g.namespace_routing.is_none());
    let e = &g.endpoints[0];
    assert_eq!((e.weight, e.priority), (1, 1));
    assert_eq!(e.tags, ["default"]);
    let b = CircuitBreaker::default();
    assert_eq!((b.failure_threshold, b.success_threshold), (5, 3));
    assert_eq!(b.recovery_timeout, Duration::from_secs(30));
    assert_eq!(b.timeout_duration, Duration::from_secs(10));
    assert_eq!(b.monitoring_window, Duration::from_secs(60));
}

#[test]
fn the_seed_example_gives_its_rate_limit_pool_and_resolved_endpoints() {
    let c = config(SEED);
    assert_eq!(
        c.local.rate_limit,
        Some(RateLimit {
            requests_per_second: 10.0,
            burst: 20,
            window: None,
            max_wait: Duration::from_secs(30),
        })
    );
    let g = c.gateway.unwrap();
    let pool = g.pool.clone().expect("pool on");
    assert_eq!((pool.min_size, pool.max_size), (2, 10));
    assert_eq!(pool.max_idle_time, Duration::from_secs(300));
    // Both endpoints take the gateway's auth, connection and TLS.
    for e in &g.endpoints {
        assert_eq!(e.auth.token_env.as_deref(), Some("MCP_AUTH_TOKEN"));
        assert_eq!(e.tls.cipher_suites.len(), 2);
        assert_eq!(e.pool, g.pool);
        assert_eq!(e.reconnect, g.reconnect);
        assert_eq!(e.timeout, Duration::from_millis(5000));
    }
}

#[test]
fn a_rate_limit_is_on_with_a_rate_or_enabled_and_its_burst_follows_the_rate() {
    let on = |text: &str| config(text).local.rate_limit;
    let r = on("local: { rate_limit: { requests_per_sec: 2.5 } }\n").expect("the alias works");
    assert_eq!((r.requests_per_second, r.burst), (2.5, 3));
    let r = on("local: { rate_limit: { requests_per_second: 0.2 } }\n").unwrap();
    assert_eq!(r.burst, 1);
    assert!(on("local: { rate_limit: { enabled: false, requests_per_second: 5 } }\n").is_none());
    assert!(on("local: { rate_limit: { burst: 4 } }\n").is_none());
    // window_size: the Go router's whole seconds, or a Go duration; max_wait_ms.
    let r = on("local: { rate_limit: { enabled: true, requests_per_second: 5, window_size: 60, max_wait_ms: 0 } }\n").unwrap();
    assert_eq!(r.window, Some(Duration::from_secs(60)));
    assert_eq!(r.max_wait, Duration::ZERO);
    let r = on("local: { rate_limit: { requests_per_second: 5, window_size: 1500ms } }\n").unwrap();
    assert_eq!(r.window, Some(Duration::from_millis(1500)));
    let env = [
        ("MCP_LOCAL_RATE_LIMIT_REQUESTS_PER_SECOND", "7"),
        ("MCP_LOCAL_RATE_LIMIT_BURST", "9"),
    ];
    let r = load_text("", &env)
        .unwrap()
        .config
        .local
        .rate_limit
        .unwrap();
    assert_eq!((r.requests_per_second, r.burst), (7.0, 9));
}

#[test]
fn rate_limit_mistakes_name_the_key() {
    let err = errors_of(
        "
local: { rate_limit: { requests_per_second: 0, burst: 0, window_size: 0 } }
servers:
  - name: a
    command: a
    rate_limit: { enabled: true }
  - name: b
    command: b
    rate_limit: { requests_per_second: .nan, burst: 5000000000 }
",
    );
    assert_all(
        &err,
        &[
            "local.rate_limit.requests_per_second: 0 must be a number > 0",
            "local.rate_limit.burst: 0 must be a whole number ≥ 1",
            "local.rate_limit.window_size: 0 is not allowed (leave it out for the token bucket alone",
            "servers[0].rate_limit.requests_per_second: is required when the rate limit is enabled",
            "servers[1].rate_limit.requests_per_second: NaN must be a number > 0",
            "servers[1].rate_limit.burst: 5000000000 is too large (at most 4294967295)",
        ],
    );
    // A value that is not allowed is reported even where the limit is off.
    let err = errors_of("local: { rate_limit: { enabled: false, burst: -1 } }\n");
    assert!(err.contains("local.rate_limit.burst: -1 must be"), "{err}");
}

#[test]
fn a_server_has_its_own_limits_and_breaker() {
    let c = config(
        "
advanced: { circuit_breaker: { failure_threshold: 7, timeout_seconds: 12 } }
servers:
  - name: a
    command: a
    max_concurrent_requests: 4
    rate_limit: { requests_per_second: 1, burst: 2 }
    circuit_breaker: { enabled: true, success_threshold: 1, monitoring_window: 2m }
  - name: b
    command: b
",
    );
    let (a, b) = (&c.servers[0], &c.servers[1]);
    assert_eq!(a.max_concurrent_requests, Some(4));
    assert_eq!(a.max_concurrent(&c.local), 4);
    assert_eq!(b.max_concurrent(&c.local), 100);
    assert_eq!(a.rate_limit.as_ref().map(|r| r.burst), Some(2));
    // Its own values, then advanced.circuit_breaker's, then the defaults.
    assert_eq!(
        a.circuit_breaker,
        Some(CircuitBreaker {
            failure_threshold: 7,
            recovery_timeout: Duration::from_secs(12),
            success_threshold: 1,
            timeout_duration: Duration::from_secs(10),
            monitoring_window: Duration::from_secs(120),
        })
    );
    assert!(b.rate_limit.is_none() && b.circuit_breaker.is_none());
    let err = errors_of("servers:\n  - { name: a, command: a, max_concurrent_requests: 0 }\n");
    assert!(
        err.contains("servers[0].max_concurrent_requests: 0 is not allowed"),
        "{err}"
    );
}

#[test]
fn a_breaker_is_off_unless_enabled_and_says_so_when_only_its_settings_are_given() {
    let loaded = load_text(
        "servers:\n  - { name: a, command: a, circuit_breaker: { failure_threshold: 2 } }\n",
        &[],
    )
    .unwrap();
    assert!(loaded.config.servers[0].circuit_breaker.is_none());
    assert!(
        loaded.warnings.iter().any(|w| w.starts_with(
            "servers[0].circuit_breaker: settings are given but enabled is not, so the circuit breaker stays off"
        )),
        "{:#?}",
        loaded.warnings
    );
    let quiet = load_text(
        "servers:\n  - { name: a, command: a, circuit_breaker: { enabled: false, failure_threshold: 2 } }\n",
        &[],
    )
    .unwrap();
    assert!(quiet.warnings.is_empty(), "{:#?}", quiet.warnings);
}

#[test]
fn the_gateway_breaker_follows_its_section_and_mcp_circuit_breaker_enabled() {
    let text = "
gateway: { url: wss://gw.example.com }
gateway_pool:
  circuit_breaker: { enabled: true, failure_threshold: 2, recovery_timeout: 45s, timeout_duration: 1500 }
";
    let b = gateway(text).circuit_breaker.expect("enabled");
    assert_eq!(b.failure_threshold, 2);
    assert_eq!(b.recovery_timeout, Duration::from_secs(45));
    assert_eq!(b.timeout_duration, Duration::from_millis(1500));
    let env_off = load_text(text, &[("MCP_CIRCUIT_BREAKER_ENABLED", "false")]).unwrap();
    assert!(env_off.config.gateway.unwrap().circuit_breaker.is_none());
    let env_on = load_text(
        "gateway: { url: wss://gw.example.com }\n",
        &[("MCP_CIRCUIT_BREAKER_ENABLED", "true")],
    )
    .unwrap();
    assert_eq!(
        env_on.config.gateway.unwrap().circuit_breaker,
        Some(CircuitBreaker::default())
    );
}

#[test]
fn breaker_mistakes_name_the_key() {
    let err = errors_of(
        "
gateway_pool:
  circuit_breaker: { enabled: true, failure_threshold: 0, recovery_timeout: 0s, success_threshold: -2, monitoring_window: 0 }
advanced:
  circuit_breaker: { failure_threshold: 0, timeout_seconds: 0, interval_seconds: -1, max_requests: 0, success_ratio: 1.5 }
",
    );
    assert_all(
        &err,
        &[
            "gateway_pool.circuit_breaker.failure_threshold: 0 must be a whole number ≥ 1",
            "gateway_pool.circuit_breaker.recovery_timeout: 0 is not allowed (how long the circuit stays open",
            "gateway_pool.circuit_breaker.success_threshold: -2 must be a whole number ≥ 1",
            "gateway_pool.circuit_breaker.monitoring_window: 0 is not allowed",
            "advanced.circuit_breaker.failure_threshold: 0 must be a whole number ≥ 1",
            "advanced.circuit_breaker.timeout_seconds: 0 must be a whole number of seconds ≥ 1",
            "advanced.circuit_breaker.interval_seconds: -1 must be a whole number of seconds ≥ 1",
            "advanced.circuit_breaker.max_requests: 0 must be a whole number ≥ 1",
            "advanced.circuit_breaker.success_ratio: 1.5 must be a fraction > 0 and ≤ 1",
        ],
    );
}

#[test]
fn the_pool_is_validated_wherever_it_is_written() {
    let g = gateway(
        "gateway: { url: wss://gw, connection: { pool: { max_size: 1, acquire_timeout_ms: 250 } } }\n",
    );
    let pool = g.pool.unwrap();
    // min_size follows a smaller max_size when it is not given.
    assert_eq!((pool.min_size, pool.max_size), (1, 1));
    assert_eq!(pool.acquire_timeout, Duration::from_millis(250));
    assert!(
        gateway("gateway: { url: wss://gw, connection: { pool: { enabled: false } } }\n")
            .pool
            .is_none()
    );
    let err = errors_of(
        "
gateway:
  url: wss://gw
  connection: { pool: { min_size: 5, max_size: 3, max_idle_time_ms: 0 } }
  endpoints:
    - url: wss://gw2
      connection: { pool: { max_size: 0, health_check_interval_ms: 0 } }
gateway_pool:
  endpoints:
    - url: wss://a
      connection: { pool: { min_size: -1, max_lifetime_ms: 0, acquire_timeout_ms: 0 } }
",
    );
    assert_all(
        &err,
        &[
            "gateway.connection.pool.min_size: 5 is larger than max_size (3)",
            "gateway.connection.pool.max_idle_time_ms: 0 is not allowed (how long a connection may sit idle",
            "gateway.endpoints[0].connection.pool.max_size: 0 must be a whole number ≥ 1",
            "gateway.endpoints[0].connection.pool.health_check_interval_ms: 0 is not allowed",
            "gateway_pool.endpoints[0].connection.pool.min_size: -1 must be a whole number ≥ 0",
            "gateway_pool.endpoints[0].connection.pool.max_lifetime_ms: 0 is not allowed",
            "gateway_pool.endpoints[0].connection.pool.acquire_timeout_ms: 0 is not allowed",
        ],
    );
}

#[test]
fn an_endpoint_takes_its_own_sections_else_the_gateways() {
    let g = gateway(
        "
gateway:
  url: wss://main.example.com
  auth: { type: bearer, token_env: MAIN_TOKEN }
  connection: { timeout_ms: 1000, reconnect: { max_attempts: 3 } }
  tls: { ca_cert_path: /main/ca.pem }
  endpoints:
    - url: tcps://same.example.com:8444
      weight: 3
      priority: 0
      tags: [blue, green]
    - url: wss://own.example.com
      auth: { type: oauth2, client_id: c, token_endpoint: https://idp.example.com/token }
      connection: { keepalive_interval_ms: 5000 }
      tls: { min_version: \"1.2\" }
",
    );
    let [main, same, own] = &g.endpoints[..] else {
        panic!("{:?}", g.endpoints)
    };
    assert_eq!(main.url, "wss://main.example.com");
    assert_eq!((main.weight, main.priority), (1, 1));
    assert_eq!(main.auth.token_env.as_deref(), Some("MAIN_TOKEN"));
    assert_eq!((same.weight, same.priority), (3, 0));
    assert_eq!(same.tags, ["blue", "green"]);
    assert_eq!(same.auth.token_env.as_deref(), Some("MAIN_TOKEN"));
    assert_eq!(same.timeout, Duration::from_millis(1000));
    assert_eq!(same.reconnect.max_attempts, Some(3));
    assert_eq!(
        same.tls.ca_cert_path.as_deref(),
        Some(std::path::Path::new("/main/ca.pem"))
    );
    // Its own sections replace the gateway's whole: unset keys are the defaults.
    assert_eq!(own.auth_type, "oauth2");
    assert_eq!(own.keepalive_interval, Duration::from_millis(5000));
    assert_eq!(own.timeout, Duration::from_millis(5000));
    assert_eq!(own.reconnect, ReconnectPolicy::default());
    assert_eq!(own.tls.min_version, "1.2");
    assert!(own.tls.ca_cert_path.is_none());
    // The gateway's own settings stay what the connector uses today.
    assert_eq!(g.auth_type, "bearer");
    assert_eq!(g.timeout, Duration::from_millis(1000));
}

#[test]
fn without_gateway_the_pools_first_endpoint_is_what_the_others_inherit() {
    let g = gateway(
        "
gateway_pool:
  endpoints:
    - url: wss://a.example.com
      auth: { token_env: A }
      connection: { timeout_ms: 700 }
    - url: wss://b.example.com
      auth: { token_env: B }
      weight: 5
    - url: wss://c.example.com
",
    );
    let tokens: Vec<Option<&str>> = g
        .endpoints
        .iter()
        .map(|e| e.auth.token_env.as_deref())
        .collect();
    assert_eq!(tokens, [Some("A"), Some("B"), Some("A")]);
    assert!(g
        .endpoints
        .iter()
        .all(|e| e.timeout == Duration::from_millis(700)));
    assert_eq!(g.endpoints[1].weight, 5);
    assert_eq!(g.auth.token_env.as_deref(), Some("A"));
    assert_eq!(g.timeout, Duration::from_millis(700));
}

#[test]
fn endpoint_mistakes_name_the_key() {
    let err = errors_of(
        "
gateway:
  endpoints:
    - { url: wss://a, weight: 0, tags: [\"\"] }
gateway_pool:
  endpoints:
    - { url: wss://b, weight: -3, auth: { type: mtls } }
",
    );
    assert_all(
        &err,
        &[
            "gateway.endpoints[0].weight: 0 must be a whole number ≥ 1",
            "gateway.endpoints[0].tags[0]: is empty",
            "gateway_pool.endpoints[0].weight: -3 must be a whole number ≥ 1",
            "gateway_pool.endpoints[0].auth.type: mtls needs client_cert and client_key",
        ],
    );
}

#[test]
fn an_endpoints_mtls_may_take_its_files_from_the_tls_it_inherits() {
    let g = gateway(
        "
gateway:
  url: wss://gw
  tls: { client_cert: /c.pem, client_key: /k.pem }
  endpoints:
    - { url: wss://other, auth: { type: mtls } }
",
    );
    assert_eq!(g.endpoints[1].auth_type, "mtls");
}

#[test]
fn the_load_balancer_strategy_comes_from_the_file_or_mcp_load_balancer_strategy() {
    for (name, strategy) in Strategy::ALL {
        let text = format!(
            "gateway: {{ url: wss://gw }}\ngateway_pool: {{ load_balancer: {{ strategy: {name}, failover_timeout: 5s, retry_count: 0 }} }}\n"
        );
        let lb = gateway(&text).load_balancer;
        assert_eq!(lb.strategy, strategy, "{name}");
        assert_eq!(lb.failover_timeout, Duration::from_secs(5));
        assert_eq!(lb.retry_count, 0);
    }
    let env = load_text(
        "gateway: { url: wss://gw }\ngateway_pool: { load_balancer: { strategy: weighted } }\n",
        &[("MCP_LOAD_BALANCER_STRATEGY", "least_connections")],
    )
    .unwrap();
    assert_eq!(
        env.config.gateway.unwrap().load_balancer.strategy,
        Strategy::LeastConnections
    );
    let err = load_text(
        "gateway: { url: wss://gw }\n",
        &[("MCP_LOAD_BALANCER_STRATEGY", "random")],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("gateway_pool.load_balancer.strategy: 'random' is not one of round_robin, least_connections, weighted, priority"),
        "{err}"
    );
    let err =
        errors_of("gateway_pool: { load_balancer: { failover_timeout: 0s, retry_count: -1 } }\n");
    assert_all(
        &err,
        &[
            "gateway_pool.load_balancer.failover_timeout: 0 is not allowed",
            "gateway_pool.load_balancer.retry_count: -1 must be a whole number ≥ 0",
        ],
    );
}

#[test]
fn namespace_rules_are_compiled_and_tried_lowest_priority_first() {
    let g = gateway(
        r#"
gateway: { url: wss://gw }
gateway_pool:
  namespace_routing:
    enabled: true
    rules:
      - { pattern: "^tools/", tags: [tools], priority: 5, description: tools }
      - { pattern: "^(\\w+)\\.", tags: ["$1", default], priority: 1 }
      - { pattern: "^k8s/", tags: [k8s], priority: 5 }
      - { pattern: "", tags: [default] }
"#,
    );
    let routing = g.namespace_routing.expect("enabled");
    let order: Vec<(&str, i64)> = routing
        .rules
        .iter()
        .map(|r| (r.pattern.as_str(), r.priority))
        .collect();
    assert_eq!(
        order,
        [("", 0), ("^(\\w+)\\.", 1), ("^tools/", 5), ("^k8s/", 5)]
    );
    assert!(routing.rules[1].pattern.is_match("github.search"));
    assert_eq!(routing.rules[2].description.as_deref(), Some("tools"));
}

#[test]
fn a_bad_rule_names_its_key_path() {
    let err = errors_of(
        r#"
gateway_pool:
  namespace_routing:
    enabled: true
    rules:
      - { pattern: "^ok$", tags: [a] }
      - { tags: [b] }
      - { pattern: "^(unclosed", tags: [c] }
      - { pattern: "^x" }
      - { pattern: "^(a)(b)", tags: ["$3", "$0", ""] }
      - { pattern: "^plain", tags: ["$1"] }
"#,
    );
    assert_all(
        &err,
        &[
            "gateway_pool.namespace_routing.rules[1].pattern: is missing",
            "gateway_pool.namespace_routing.rules[2].pattern: '^(unclosed' is not a valid regular expression: unclosed group",
            "gateway_pool.namespace_routing.rules[3].tags: is missing",
            "gateway_pool.namespace_routing.rules[4].tags[0]: '$3' uses group 3, but the pattern has 2 groups",
            "gateway_pool.namespace_routing.rules[4].tags[1]: '$0' uses group 0",
            "gateway_pool.namespace_routing.rules[4].tags[2]: is empty",
            "gateway_pool.namespace_routing.rules[5].tags[0]: '$1' uses group 1, but the pattern has no group",
        ],
    );
    assert!(!err.contains("rules[0]"), "{err}");
    // One line per problem, the regex crate's caret drawing left out.
    assert!(
        err.lines().all(|l| !l.trim_start().starts_with('^')),
        "{err}"
    );
}

#[test]
fn namespace_routing_off_or_without_rules_is_said() {
    let loaded = load_text(
        "gateway: { url: wss://gw }\ngateway_pool: { namespace_routing: { rules: [{ pattern: x, tags: [a] }] } }\n",
        &[],
    )
    .unwrap();
    assert!(loaded.config.gateway.unwrap().namespace_routing.is_none());
    assert!(
        loaded.warnings.iter().any(|w| w
            .starts_with("gateway_pool.namespace_routing: settings are given but enabled is not")),
        "{:#?}",
        loaded.warnings
    );
    let loaded = load_text(
        "gateway: { url: wss://gw }\ngateway_pool: { namespace_routing: { enabled: true } }\n",
        &[],
    )
    .unwrap();
    assert!(loaded.config.gateway.unwrap().namespace_routing.is_some());
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("enabled with no rules")),
        "{:#?}",
        loaded.warnings
    );
}

#[test]
fn reconnect_is_validated_wherever_a_policy_is_written() {
    let bad = "{ initial_delay_ms: 5000, max_delay_ms: 10, multiplier: 0.5, max_attempts: -2, jitter: 2 }";
    let err = errors_of(&format!(
        "
gateway:
  url: wss://gw
  connection: {{ reconnect: {bad} }}
  endpoints:
    - {{ url: wss://e, connection: {{ reconnect: {bad} }} }}
gateway_pool:
  endpoints:
    - {{ url: wss://p, connection: {{ reconnect: {bad} }} }}
servers:
  - {{ name: s, command: s, reconnect: {bad} }}
"
    ));
    for at in [
        "gateway.connection.reconnect",
        "gateway.endpoints[0].connection.reconnect",
        "gateway_pool.endpoints[0].connection.reconnect",
        "servers[0].reconnect",
    ] {
        assert_all(
            &err,
            &[
                &format!("{at}.initial_delay_ms: 5000 is larger than max_delay_ms (10)"),
                &format!("{at}.multiplier: 0.5 must be a number ≥ 1"),
                &format!("{at}.max_attempts: -2 is not allowed"),
                &format!("{at}.jitter: 2 must be between 0 and 1"),
            ],
        );
        // Each mistake once, under the key where it is written.
        let once = format!("{at}.multiplier:");
        assert_eq!(err.matches(&once).count(), 1, "{once}\n{err}");
    }
    // 0 and -1 are both "forever".
    for n in [0, -1] {
        let g = gateway(&format!(
            "gateway: {{ url: wss://gw, connection: {{ reconnect: {{ max_attempts: {n} }} }} }}\n"
        ));
        assert_eq!(g.reconnect.max_attempts, None);
    }
}

#[test]
fn a_zero_initial_delay_is_refused_and_the_keys_not_written_keep_their_defaults() {
    let err =
        errors_of("servers:\n  - { name: s, command: s, reconnect: { initial_delay_ms: 0 } }\n");
    assert_all(
        &err,
        &["servers[0].reconnect.initial_delay_ms: 0 is not allowed (every retry would come at once"],
    );
    let c = config(
        "servers:\n  - { name: s, command: s, reconnect: { max_delay_ms: 2000, jitter: 0 } }\n",
    );
    assert_eq!(
        c.servers[0].reconnect,
        ReconnectPolicy {
            max_delay: Duration::from_millis(2000),
            jitter: 0.0,
            ..ReconnectPolicy::default()
        }
    );
}

#[test]
fn a_direct_server_without_reconnect_takes_the_defaults_not_the_gateways() {
    let c = config(
        "
gateway:
  url: wss://gw
  connection: { reconnect: { initial_delay_ms: 5, max_attempts: 0, jitter: 0 } }
servers:
  - { name: plain, command: s }
  - { name: own, url: ws://own, reconnect: { max_attempts: 3 } }
",
    );
    let gw = c.gateway.as_ref().unwrap();
    assert_eq!(gw.reconnect.initial_delay, Duration::from_millis(5));
    assert_eq!(gw.reconnect.max_attempts, None);
    assert_eq!(c.servers[0].reconnect, ReconnectPolicy::default());
    assert_eq!(c.servers[1].reconnect.max_attempts, Some(3));
    assert_eq!(
        c.servers[1].reconnect.initial_delay,
        ReconnectPolicy::default().initial_delay
    );
}

#[test]
fn config_check_shows_the_resolved_sections() {
    let c = config(
        r#"
local: { rate_limit: { requests_per_second: 10, burst: 20, window_size: 60 } }
gateway:
  url: wss://ops:hunter2@gw.example.com/mcp?token=SECRET-Q
  endpoints: [{ url: tcps://b.example.com:8444, weight: 2, tags: [blue] }]
gateway_pool:
  load_balancer: { strategy: weighted }
  circuit_breaker: { enabled: true }
  namespace_routing: { enabled: true, rules: [{ pattern: "^gh\\.", tags: [blue] }] }
servers:
  - { name: s, command: s, max_concurrent_requests: 3, rate_limit: { requests_per_second: 1 } }
"#,
    );
    let shown = render_effective(&c);
    for needle in [
        "requests_per_second: 10.0",
        "window_size: 1m",
        "max_wait_ms: 30000",
        "strategy: weighted",
        "failover_timeout: 30s",
        "recovery_timeout: 30s",
        "pattern: ^gh\\.",
        "max_concurrent_requests: 3",
        "weight: 2",
        "- blue",
        "max_idle_time_ms: 300000",
    ] {
        assert!(shown.contains(needle), "missing {needle:?} in:\n{shown}");
    }
    assert!(
        !shown.contains("SECRET-Q") && !shown.contains("hunter2"),
        "{shown}"
    );
}
