//! Raw (as written) → validated (as used): defaults applied, every rule checked, every
//! problem collected with its key path, the bad value and what is allowed.
//!
//! Pure: no file or environment access. `load` feeds it the merged raw tree. The server
//! entries are `validate/servers.rs`; the gateway's endpoints and the pool policies
//! `validate/endpoints.rs` (namespace routing `validate/namespace.rs`); rate limits,
//! circuit breakers and connection pools `validate/resilience.rs`.

mod endpoints;
mod namespace;
mod resilience;
mod servers;

use std::path::PathBuf;
use std::time::Duration;

use super::raw::*;
use super::*;

/// TLS cipher suites the TLS stack offers, by IANA name.
pub const CIPHER_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error"];
const SERVER_SCHEMES: &[&str] = &["http", "https", "ws", "wss", "tcp", "tcps", "tcp+tls"];
const GATEWAY_SCHEMES: &[&str] = &["ws", "wss", "tcp", "tcps", "tcp+tls"];

/// Collects problems; `check` adds one when a rule fails.
#[derive(Default)]
pub struct Problems {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl Problems {
    fn err(&mut self, path: &str, msg: impl std::fmt::Display) {
        self.errors.push(format!("{path}: {msg}"));
    }

    fn one_of(&mut self, path: &str, value: &str, allowed: &[&str]) -> bool {
        if allowed.contains(&value) {
            return true;
        }
        self.err(
            path,
            format!("'{value}' is not one of {}", allowed.join(", ")),
        );
        false
    }
}

pub fn validate(raw: &RawConfig, p: &mut Problems) -> Config {
    let version = raw.version.unwrap_or(1);
    if version != 1 {
        p.err("version", format!("{version} is not supported (use 1)"));
    }
    let shared_breaker = resilience::shared_breaker(
        raw.advanced
            .as_ref()
            .and_then(|a| a.circuit_breaker.as_ref()),
        p,
    );
    // The gateway's own auth, connection and TLS, validated once: its endpoints inherit
    // them.
    let gateway_settings = raw.gateway.as_ref().map(|g| {
        endpoints::Settings::of(
            g.auth.as_ref(),
            g.connection.as_ref(),
            g.tls.as_ref(),
            "gateway",
            &endpoints::Settings::default(),
            p,
        )
    });
    let aggregate = aggregate(raw.aggregate.as_ref(), p);
    let servers = servers::servers(
        raw.servers.as_deref().unwrap_or_default(),
        &servers::Defaults {
            breaker: &shared_breaker,
            separator: &aggregate.separator,
        },
        p,
    );
    // Checked even when `gateway:` is set too (and they are not used).
    let pooled = raw
        .gateway_pool
        .as_ref()
        .map(|g| endpoints::pooled(g.endpoints.as_deref().unwrap_or_default(), p));
    let policies = endpoints::policies(raw.gateway_pool.as_ref(), &shared_breaker, p);
    let default_namespace = raw
        .gateway_pool
        .as_ref()
        .and_then(|g| g.default_namespace.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    let gateway = match (&raw.gateway, gateway_settings, pooled) {
        (Some(g), Some(top), _) => {
            let eps = endpoints::listed(
                g.url.as_ref(),
                g.endpoints.as_deref().unwrap_or_default(),
                &top,
                p,
            );
            Some(gateway(g, top, eps, policies, default_namespace, p))
        }
        // The Go router's shape: its endpoints, the first one's auth, connection and TLS
        // as the gateway's.
        (None, _, Some((eps, Some(top)))) => Some(gateway(
            &RawGateway::default(),
            top,
            eps,
            policies,
            default_namespace,
            p,
        )),
        _ => None,
    }
    .filter(|g| !g.endpoints.is_empty());
    for (i, s) in servers.iter().enumerate() {
        let needs_gateway = s.connection_mode == ConnectionMode::Gateway
            || matches!(
                s.target,
                ServerTarget::AutoDetect {
                    fallback_gateway: true,
                    ..
                }
            );
        if needs_gateway && gateway.is_none() {
            p.err(
                &format!("servers[{i}]"),
                format!("server '{}' is routed through the gateway (connection_mode: gateway or fallback: gateway), but no gateway is configured: set gateway.url", s.name),
            );
        }
    }
    let direct = direct(raw.direct_clients.as_ref(), p);
    let local = local(raw.local.as_ref(), p);
    let logging = logging(raw.logging.as_ref(), p);
    let metrics = metrics(raw.metrics.as_ref(), p);
    Config {
        version,
        servers,
        aggregate,
        gateway,
        gateway_pool: raw.gateway_pool.clone(),
        direct,
        local,
        logging,
        metrics,
        tracing: raw.tracing.clone(),
        advanced: raw.advanced.clone(),
        secrets: Secrets::default(),
    }
}

fn ms(v: Option<u64>, default: u64) -> Duration {
    Duration::from_millis(v.unwrap_or(default))
}

fn dur(v: Option<super::duration::ConfigDuration>, default: Duration) -> Duration {
    v.map_or(default, |d| d.0)
}

pub fn reconnect(r: &RawReconnect, path: &str, p: &mut Problems) -> ReconnectPolicy {
    let d = ReconnectPolicy::default();
    let policy = ReconnectPolicy {
        initial_delay: r
            .initial_delay_ms
            .map_or(d.initial_delay, Duration::from_millis),
        max_delay: r.max_delay_ms.map_or(d.max_delay, Duration::from_millis),
        multiplier: r.multiplier.unwrap_or(d.multiplier),
        max_attempts: match r.max_attempts {
            None => d.max_attempts,
            Some(n) if n <= 0 => {
                if n < -1 {
                    p.err(
                        &format!("{path}.max_attempts"),
                        format!(
                            "{n} is not allowed (use a positive number, or 0 / -1 for forever)"
                        ),
                    );
                }
                None
            }
            Some(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        },
        jitter: r.jitter.unwrap_or(d.jitter),
    };
    if !(policy.multiplier >= 1.0 && policy.multiplier.is_finite()) {
        p.err(
            &format!("{path}.multiplier"),
            format!("{} must be a number ≥ 1", policy.multiplier),
        );
    }
    if !(0.0..=1.0).contains(&policy.jitter) {
        p.err(
            &format!("{path}.jitter"),
            format!(
                "{} must be between 0 and 1 (a fraction of the delay)",
                policy.jitter
            ),
        );
    }
    if policy.initial_delay.is_zero() {
        // Every delay grows from this one by the multiplier, so all of them would be 0: a
        // server that exits at once would be restarted in a hot loop.
        p.err(
            &format!("{path}.initial_delay_ms"),
            "0 is not allowed (every retry would come at once; use at least 1)",
        );
    } else if policy.initial_delay > policy.max_delay {
        p.err(
            &format!("{path}.initial_delay_ms"),
            format!(
                "{} is larger than max_delay_ms ({})",
                policy.initial_delay.as_millis(),
                policy.max_delay.as_millis()
            ),
        );
    }
    policy
}

fn scheme_of(url: &str) -> &str {
    url.split_once("://").map_or("", |(s, _)| s)
}

fn check_url(url: &str, path: &str, allowed: &[&str], p: &mut Problems) {
    let scheme = scheme_of(url);
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    if scheme.is_empty() || rest.is_empty() {
        p.err(
            path,
            format!(
                "'{}' is not a URL (expected {}://host[:port][/path])",
                crate::telemetry::redact::masked(url),
                allowed[0]
            ),
        );
    } else if !allowed.contains(&scheme) {
        let list: Vec<String> = allowed.iter().map(|s| format!("{s}://")).collect();
        p.err(
            path,
            format!(
                "scheme '{scheme}' is not supported (use {})",
                list.join(", ")
            ),
        );
    }
}

/// The separator goes into tool names, which clients require to be `[A-Za-z0-9_-]{1,64}`.
fn aggregate(a: Option<&RawAggregate>, p: &mut Problems) -> AggregateConfig {
    let separator = a
        .and_then(|a| a.separator.clone())
        .unwrap_or_else(|| AggregateConfig::default().separator);
    if !servers::is_token(&separator, 8) {
        p.err(
            "aggregate.separator",
            format!("'{separator}' is not allowed: use 1 to 8 letters, digits, '_' or '-' (it becomes part of tool names)"),
        );
    }
    AggregateConfig { separator }
}

fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest).display().to_string(),
        _ => path.to_owned(),
    }
}

/// `g`: the settings that are not per endpoint (protocol, framing …); `top`: the gateway's
/// own auth, connection and TLS; `endpoints` resolved already.
fn gateway(
    g: &RawGateway,
    top: endpoints::Settings,
    endpoints: Vec<GatewayEndpoint>,
    policies: endpoints::Policies,
    default_namespace: &str,
    p: &mut Problems,
) -> GatewayConfig {
    let protocol_preference = g
        .protocol_preference
        .clone()
        .unwrap_or_else(|| "websocket".into());
    p.one_of(
        "gateway.protocol_preference",
        &protocol_preference,
        &["websocket", "tcp"],
    );
    let framing = g.framing.clone().unwrap_or_else(|| "mcpb".into());
    p.one_of("gateway.framing", &framing, &["mcpb", "legacy"]);
    GatewayConfig {
        endpoints,
        protocol_preference,
        auto_select: g.auto_select.unwrap_or(true),
        auth_type: top.auth_type,
        auth: top.auth,
        timeout: top.timeout,
        keepalive_interval: top.keepalive_interval,
        reconnect: top.reconnect,
        pool: top.pool,
        tls: top.tls,
        framing,
        tcp_notifications: g.tcp_notifications.unwrap_or(false),
        default_namespace: default_namespace.to_owned(),
        load_balancer: policies.load_balancer,
        circuit_breaker: policies.circuit_breaker,
        namespace_routing: policies.namespace_routing,
    }
}

fn auth(a: &RawAuth, tls: Option<&RawTls>, at: &str, p: &mut Problems) -> String {
    let kind = a.kind.clone().unwrap_or_else(|| "bearer".into());
    if !p.one_of(&format!("{at}.type"), &kind, &["bearer", "mtls", "oauth2"]) {
        return kind;
    }
    match kind.as_str() {
        "mtls" => {
            let cert = a
                .client_cert
                .as_ref()
                .or(tls.and_then(|t| t.client_cert.as_ref()));
            let key = a
                .client_key
                .as_ref()
                .or(tls.and_then(|t| t.client_key.as_ref()));
            if cert.is_none() || key.is_none() {
                p.err(
                    &format!("{at}.type"),
                    "mtls needs client_cert and client_key (paths to PEM files)",
                );
            }
        }
        "oauth2" => {
            if a.client_id.as_deref().unwrap_or("").is_empty() {
                p.err(&format!("{at}.client_id"), "is required for oauth2");
            }
            match a.token_endpoint.as_deref() {
                None | Some("") => p.err(&format!("{at}.token_endpoint"), "is required for oauth2"),
                Some(url) => check_url(url, &format!("{at}.token_endpoint"), &["https", "http"], p),
            }
            let grant = a
                .grant_type
                .clone()
                .unwrap_or_else(|| "client_credentials".into());
            if p.one_of(
                &format!("{at}.grant_type"),
                &grant,
                &["client_credentials", "password"],
            ) && grant == "password"
                && a.username.as_deref().unwrap_or("").is_empty()
            {
                p.err(
                    &format!("{at}.username"),
                    "is required for grant_type: password",
                );
            }
        }
        _ => {}
    }
    kind
}

/// `default_min`: 1.3 for the gateway (the original's default), 1.2 for direct servers
/// (public MCP servers still run TLS 1.2).
fn tls(t: &RawTls, at: &str, default_min: &str, p: &mut Problems) -> TlsConfig {
    let min_version = t.min_version.clone().unwrap_or_else(|| default_min.into());
    p.one_of(&format!("{at}.min_version"), &min_version, &["1.2", "1.3"]);
    for (i, suite) in t.cipher_suites.iter().flatten().enumerate() {
        if !CIPHER_SUITES.contains(&suite.as_str()) {
            p.err(
                &format!("{at}.cipher_suites[{i}]"),
                format!(
                    "unknown cipher suite '{suite}' (known: {})",
                    CIPHER_SUITES.join(", ")
                ),
            );
        }
    }
    let verify = t.verify.unwrap_or(true);
    if !verify {
        p.warnings.push(format!(
            "{at}.verify: false turns off certificate verification: anyone on the network path can read and change this traffic; use ca_cert_path for a private CA instead"
        ));
    }
    TlsConfig {
        verify,
        ca_cert_path: t
            .ca_cert_path
            .clone()
            .map(|c| PathBuf::from(expand_home(&c))),
        min_version,
        cipher_suites: t.cipher_suites.clone().unwrap_or_default(),
        client_cert: t
            .client_cert
            .clone()
            .map(|c| PathBuf::from(expand_home(&c))),
        client_key: t.client_key.clone().map(|c| PathBuf::from(expand_home(&c))),
        pinned_spki_sha256: t.pinned_spki_sha256.clone().unwrap_or_default(),
    }
}

fn direct(d: Option<&RawDirect>, p: &mut Problems) -> DirectConfig {
    let d = d.cloned().unwrap_or_default();
    let ad = d.auto_detection.clone().unwrap_or_default();
    let order = ad.preferred_order.clone().unwrap_or_else(|| {
        vec![
            "http".into(),
            "websocket".into(),
            "stdio".into(),
            "sse".into(),
        ]
    });
    for (i, o) in order.iter().enumerate() {
        p.one_of(
            &format!("direct_clients.auto_detection.preferred_order[{i}]"),
            o,
            &["http", "websocket", "stdio", "sse", "tcp"],
        );
    }
    DirectConfig {
        enabled: d.enabled.unwrap_or(true),
        auto_detection_enabled: ad.enabled.unwrap_or(true),
        auto_detection_timeout: dur(ad.timeout, Duration::from_secs(10)),
        preferred_order: order,
        cache_results: ad.cache_results.unwrap_or(true),
        cache_ttl: dur(ad.cache_ttl, Duration::from_secs(300)),
        raw: d,
    }
}

fn local(l: Option<&RawLocal>, p: &mut Problems) -> LocalConfig {
    let l = l.cloned().unwrap_or_default();
    let d = LocalConfig::default();
    let cfg = LocalConfig {
        request_timeout: l
            .request_timeout_ms
            .map_or(d.request_timeout, Duration::from_millis),
        max_concurrent_requests: l
            .max_concurrent_requests
            .map_or(d.max_concurrent_requests, |n| n as usize),
        max_queued_requests: l
            .max_queued_requests
            .map_or(d.max_queued_requests, |n| n as usize),
        max_message_size: l
            .max_message_size
            .map_or(d.max_message_size, |n| n as usize),
        read_buffer_size: l
            .read_buffer_size
            .map_or(d.read_buffer_size, |n| n as usize),
        write_buffer_size: l
            .write_buffer_size
            .map_or(d.write_buffer_size, |n| n as usize),
        shutdown_grace: l
            .shutdown_grace_ms
            .map_or(d.shutdown_grace, Duration::from_millis),
        rate_limit: resilience::rate_limit(l.rate_limit.as_ref(), "local.rate_limit", p),
    };
    if cfg.request_timeout.is_zero() {
        p.err(
            "local.request_timeout_ms",
            "0 is not allowed (a request must be able to finish)",
        );
    }
    if cfg.max_message_size < 1024 {
        p.err(
            "local.max_message_size",
            format!(
                "{} bytes is too small (at least 1024)",
                cfg.max_message_size
            ),
        );
    }
    if cfg.max_concurrent_requests == 0 {
        p.err("local.max_concurrent_requests", "0 is not allowed");
    }
    cfg
}

fn logging(l: Option<&RawLogging>, p: &mut Problems) -> LoggingConfig {
    let l = l.cloned().unwrap_or_default();
    let mut level = l
        .level
        .clone()
        .unwrap_or_else(|| "info".into())
        .to_ascii_lowercase();
    if level == "warning" {
        level = "warn".into();
    }
    p.one_of("logging.level", &level, LEVELS);
    let format = match l.format.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("json") => LogFormat::Json,
        Some("text") | Some("console") => LogFormat::Text,
        Some(other) => {
            p.one_of("logging.format", other, &["json", "text"]);
            LogFormat::Json
        }
    };
    match l.output.as_deref() {
        None | Some("stderr") => {}
        Some("stdout") => p.warnings.push(
            "logging.output: 'stdout' carries the MCP protocol, so logs go to stderr instead"
                .into(),
        ),
        Some(other) => p.warnings.push(format!(
            "logging.output: writing logs to '{other}' is not supported yet; logging to stderr"
        )),
    }
    LoggingConfig {
        level,
        format,
        include_caller: l.include_caller.unwrap_or(false),
    }
}

fn metrics(m: Option<&RawMetrics>, p: &mut Problems) -> MetricsConfig {
    let m = m.cloned().unwrap_or_default();
    let endpoint = m
        .endpoint
        .clone()
        .unwrap_or_else(|| "localhost:9091".into());
    match endpoint.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
        _ => p.err(
            "metrics.endpoint",
            format!("'{endpoint}' is not host:port (e.g. localhost:9091)"),
        ),
    }
    let path = m.path.clone().unwrap_or_else(|| "/metrics".into());
    if !path.starts_with('/') {
        p.err("metrics.path", format!("'{path}' must start with /"));
    }
    MetricsConfig {
        enabled: m.enabled.unwrap_or(true),
        endpoint,
        path,
        labels: m.labels.clone().unwrap_or_default(),
    }
}
