//! The gateway's endpoints and the pool policies, raw → validated: each `endpoints[]`
//! entry of `gateway:` or `gateway_pool:` checked and resolved (its own `auth`,
//! `connection` and `tls`, else the gateway's; `weight`, `priority`, `tags`), and
//! `gateway_pool.load_balancer` and `…circuit_breaker` (`…namespace_routing` is
//! `namespace.rs`).
//!
//! Each section is validated once, where it is written: an endpoint that inherits the
//! gateway's settings takes them validated, so a mistake there is reported once, under the
//! gateway's key.

use std::time::Duration;

use super::resilience::{breaker, count, nonzero, pool};
use super::{auth, check_url, ms, namespace, reconnect, tls, Problems, GATEWAY_SCHEMES};
use crate::config::raw::{RawAuth, RawConnection, RawEndpoint, RawGatewayPool, RawTls};
use crate::config::{
    CircuitBreaker, GatewayEndpoint, LoadBalancer, NamespaceRouting, PoolConfig, ReconnectPolicy,
    Strategy, TlsConfig,
};

/// What an endpoint connects with, validated: the gateway's, or its own.
#[derive(Clone)]
pub struct Settings {
    pub auth_type: String,
    pub auth: RawAuth,
    /// As written, for an endpoint whose own `auth: { type: mtls }` takes its certificate
    /// from the TLS section it inherits.
    raw_tls: Option<RawTls>,
    pub timeout: Duration,
    pub keepalive_interval: Duration,
    pub reconnect: ReconnectPolicy,
    pub pool: Option<PoolConfig>,
    pub tls: TlsConfig,
}

impl Default for Settings {
    /// Nothing written: bearer (`MCP_AUTH_TOKEN`), the connection defaults, TLS ≥ 1.3.
    fn default() -> Self {
        Self {
            auth_type: "bearer".into(),
            auth: RawAuth::default(),
            raw_tls: None,
            timeout: Duration::from_millis(5000),
            keepalive_interval: Duration::from_millis(30_000),
            reconnect: ReconnectPolicy::default(),
            pool: Some(PoolConfig::default()),
            tls: TlsConfig::default(),
        }
    }
}

impl Settings {
    /// The sections written at `at` (`gateway`, `gateway.endpoints[1]` …), each replacing
    /// the one of `fallback` as a whole.
    pub fn of(
        auth_section: Option<&RawAuth>,
        connection: Option<&RawConnection>,
        tls_section: Option<&RawTls>,
        at: &str,
        fallback: &Settings,
        p: &mut Problems,
    ) -> Settings {
        let mut s = fallback.clone();
        if let Some(t) = tls_section {
            s.tls = tls(t, &format!("{at}.tls"), "1.3", p);
            s.raw_tls = Some(t.clone());
        }
        if let Some(a) = auth_section {
            s.auth_type = auth(a, s.raw_tls.as_ref(), &format!("{at}.auth"), p);
            s.auth = a.clone();
        }
        if let Some(c) = connection {
            let at = format!("{at}.connection");
            s.timeout = ms(c.timeout_ms, 5000);
            s.keepalive_interval = ms(c.keepalive_interval_ms, 30_000);
            s.reconnect = c
                .reconnect
                .as_ref()
                .map(|r| reconnect(r, &format!("{at}.reconnect"), p))
                .unwrap_or_default();
            s.pool = pool(c.pool.as_ref(), &format!("{at}.pool"), p);
        }
        s
    }

    fn endpoint(
        &self,
        url: String,
        weight: u32,
        priority: i64,
        tags: Vec<String>,
    ) -> GatewayEndpoint {
        GatewayEndpoint {
            url,
            auth_type: self.auth_type.clone(),
            auth: self.auth.clone(),
            timeout: self.timeout,
            keepalive_interval: self.keepalive_interval,
            reconnect: self.reconnect.clone(),
            pool: self.pool.clone(),
            tls: self.tls.clone(),
            weight,
            priority,
            tags,
        }
    }
}

/// `gateway.url` then `gateway.endpoints[]`, over the gateway's own settings `top`.
pub fn listed(
    url: Option<&String>,
    list: &[RawEndpoint],
    top: &Settings,
    p: &mut Problems,
) -> Vec<GatewayEndpoint> {
    let mut out = Vec::new();
    if let Some(url) = url {
        check_url(url, "gateway.url", GATEWAY_SCHEMES, p);
        out.push(top.endpoint(
            url.clone(),
            GatewayEndpoint::DEFAULT_WEIGHT,
            GatewayEndpoint::DEFAULT_PRIORITY,
            vec![GatewayEndpoint::DEFAULT_TAG.into()],
        ));
    }
    for (i, e) in list.iter().enumerate() {
        let at = format!("gateway.endpoints[{i}]");
        let s = Settings::of(
            e.auth.as_ref(),
            e.connection.as_ref(),
            e.tls.as_ref(),
            &at,
            top,
            p,
        );
        out.extend(endpoint(e, &at, &s, p));
    }
    out
}

/// `gateway_pool.endpoints[]`; without `gateway:` the first one's settings are the
/// gateway's (returned with the endpoints), which the others inherit.
pub fn pooled(list: &[RawEndpoint], p: &mut Problems) -> (Vec<GatewayEndpoint>, Option<Settings>) {
    let mut out = Vec::new();
    let mut first: Option<Settings> = None;
    for (i, e) in list.iter().enumerate() {
        let at = format!("gateway_pool.endpoints[{i}]");
        let fallback = first.clone().unwrap_or_default();
        let s = Settings::of(
            e.auth.as_ref(),
            e.connection.as_ref(),
            e.tls.as_ref(),
            &at,
            &fallback,
            p,
        );
        out.extend(endpoint(e, &at, &s, p));
        first.get_or_insert(s);
    }
    (out, first)
}

/// One entry: its URL (`None` when missing, reported), weight, priority and tags.
fn endpoint(e: &RawEndpoint, at: &str, s: &Settings, p: &mut Problems) -> Option<GatewayEndpoint> {
    match &e.url {
        Some(url) => check_url(url, &format!("{at}.url"), GATEWAY_SCHEMES, p),
        None => p.err(&format!("{at}.url"), "is missing"),
    }
    let weight = count(
        e.weight,
        GatewayEndpoint::DEFAULT_WEIGHT,
        1,
        &format!("{at}.weight"),
        p,
    );
    let tags = e
        .tags
        .clone()
        .unwrap_or_else(|| vec![GatewayEndpoint::DEFAULT_TAG.into()]);
    for (j, tag) in tags.iter().enumerate() {
        if tag.trim().is_empty() {
            p.err(
                &format!("{at}.tags[{j}]"),
                "is empty (a tag names a group of endpoints for namespace routing, e.g. default)",
            );
        }
    }
    let priority = e.priority.unwrap_or(GatewayEndpoint::DEFAULT_PRIORITY);
    Some(s.endpoint(e.url.clone()?, weight, priority, tags))
}

/// What `gateway_pool:` says about spreading requests, for whichever endpoints are used.
pub struct Policies {
    pub load_balancer: LoadBalancer,
    pub circuit_breaker: Option<CircuitBreaker>,
    pub namespace_routing: Option<NamespaceRouting>,
}

/// `shared`: `advanced.circuit_breaker`'s values over the defaults.
pub fn policies(g: Option<&RawGatewayPool>, shared: &CircuitBreaker, p: &mut Problems) -> Policies {
    let Some(g) = g else {
        return Policies {
            load_balancer: LoadBalancer::default(),
            circuit_breaker: None,
            namespace_routing: None,
        };
    };
    Policies {
        load_balancer: load_balancer(g, p),
        circuit_breaker: breaker(
            g.circuit_breaker.as_ref(),
            "gateway_pool.circuit_breaker",
            shared,
            p,
        ),
        namespace_routing: g
            .namespace_routing
            .as_ref()
            .and_then(|n| namespace::routing(n, p)),
    }
}

fn load_balancer(g: &RawGatewayPool, p: &mut Problems) -> LoadBalancer {
    let d = LoadBalancer::default();
    let Some(lb) = &g.load_balancer else {
        return d;
    };
    let at = "gateway_pool.load_balancer";
    let strategy = match lb.strategy.as_deref() {
        None => d.strategy,
        Some(name) => match Strategy::ALL.iter().find(|(n, _)| *n == name) {
            Some((_, s)) => *s,
            None => {
                let names: Vec<&str> = Strategy::ALL.iter().map(|(n, _)| *n).collect();
                p.one_of(&format!("{at}.strategy"), name, &names);
                d.strategy
            }
        },
    };
    LoadBalancer {
        strategy,
        failover_timeout: nonzero(
            lb.failover_timeout.map_or(d.failover_timeout, |f| f.0),
            &format!("{at}.failover_timeout"),
            "how long a failed endpoint is passed over",
            p,
        ),
        retry_count: count(
            lb.retry_count,
            d.retry_count,
            0,
            &format!("{at}.retry_count"),
            p,
        ),
    }
}
