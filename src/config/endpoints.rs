//! Validated gateway endpoints and the choice among them: each endpoint with its settings
//! resolved, the load balancer, namespace routing. Plain data with the documented
//! defaults.
//!
//! Owns the shapes only: `validate/endpoints.rs` and `validate/namespace.rs` build them
//! (URLs checked, patterns compiled, rules in priority order); the gateway upstream takes
//! them as they are.

use std::time::Duration;

use regex::Regex;
use serde::Serialize;

use super::{render, PoolConfig, RawAuth, ReconnectPolicy, TlsConfig};

/// One gateway endpoint, everything it connects with resolved: its own `auth`,
/// `connection` and `tls` where it has them (each replaces the gateway's whole section,
/// unset keys taking their defaults), else the gateway's (`gateway.auth`,
/// `gateway.connection`, `gateway.tls`; with only `gateway_pool:`, the first endpoint's).
/// `gateway.url` is an endpoint with the gateway's settings and the defaults below.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayEndpoint {
    #[serde(serialize_with = "render::masked_url")]
    pub url: String,
    /// `bearer`, `mtls` or `oauth2`.
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
    /// Share under `weighted`; ≥ 1, default 1.
    pub weight: u32,
    /// Order under `priority`: the lowest number is used first (ties share); default 1.
    pub priority: i64,
    /// What namespace routing matches against; default `[default]`.
    pub tags: Vec<String>,
}

impl GatewayEndpoint {
    pub const DEFAULT_WEIGHT: u32 = 1;
    pub const DEFAULT_PRIORITY: i64 = 1;
    pub const DEFAULT_TAG: &'static str = "default";
}

/// `gateway_pool.load_balancer`: how requests are spread over the endpoints. Applies to
/// the endpoints in use, `gateway:`'s or `gateway_pool:`'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadBalancer {
    /// `strategy` (also `MCP_LOAD_BALANCER_STRATEGY`), default `round_robin`.
    pub strategy: Strategy,
    /// How long an endpoint that failed is passed over; > 0, default 30 s.
    #[serde(serialize_with = "render::duration")]
    pub failover_timeout: Duration,
    /// Retries on an endpoint before failing over to the next; default 3 (0: none).
    pub retry_count: u32,
}

impl Default for LoadBalancer {
    fn default() -> Self {
        Self {
            strategy: Strategy::RoundRobin,
            failover_timeout: Duration::from_secs(30),
            retry_count: 3,
        }
    }
}

/// `gateway_pool.load_balancer.strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each endpoint in turn.
    RoundRobin,
    /// The endpoint with the fewest requests in flight.
    LeastConnections,
    /// In proportion to `weight`, spread out (smooth weighted round robin).
    Weighted,
    /// The lowest `priority` number; round robin among equals.
    Priority,
}

impl Strategy {
    /// Every strategy by the name the configuration uses.
    pub const ALL: [(&'static str, Strategy); 4] = [
        ("round_robin", Strategy::RoundRobin),
        ("least_connections", Strategy::LeastConnections),
        ("weighted", Strategy::Weighted),
        ("priority", Strategy::Priority),
    ];
}

impl From<Strategy> for crate::resilience::balance::Strategy {
    fn from(s: Strategy) -> Self {
        use crate::resilience::balance::Strategy as B;
        match s {
            Strategy::RoundRobin => B::RoundRobin,
            Strategy::LeastConnections => B::LeastConnections,
            Strategy::Weighted => B::Weighted,
            Strategy::Priority => B::Priority,
        }
    }
}

/// `gateway_pool.namespace_routing` when `enabled: true`: which endpoints (by tag) a
/// request's method goes to.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceRouting {
    /// In the order they are tried: `priority` ascending (the lowest number first, as the
    /// Go router does), rules of equal priority in file order. The first rule whose pattern
    /// matches the method decides; none matching leaves the endpoints unrestricted.
    pub rules: Vec<NamespaceRule>,
}

/// One `namespace_routing.rules[]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceRule {
    /// Matched against the method name (`tools/call`, `github.search`), unanchored unless
    /// the pattern anchors itself.
    #[serde(serialize_with = "render::regex")]
    pub pattern: Regex,
    /// The endpoint tags the method goes to; at least one. `$N` (N from 1, the longest run
    /// of digits after `$`) is replaced by the text of the pattern's group N; validation
    /// guarantees every such N is a group of the pattern.
    pub tags: Vec<String>,
    /// Default 0.
    pub priority: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}
