//! Which gateway endpoint to try, in what order: `gateway.url` / `gateway.endpoints[]`
//! parsed into protocol + address, ordered by `protocol_preference` when `auto_select`
//! is on, and the one that last worked tried first. Owns no connection and no timer.

use std::sync::atomic::{AtomicBool, Ordering};

/// The wire protocol an endpoint's scheme selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `ws://` / `wss://`: the gateway's JSON envelope in WebSocket text frames.
    WebSocket,
    /// `tcp://` / `tcps://` / `tcp+tls://`: the binary "MCPB" framing.
    Tcp,
}

/// The gateway's TCP frontend listens here when a `tcp://` URL names no port
/// (the Go router guessed 8080/8443, which is not where the gateway listens).
pub const DEFAULT_TCP_PORT: u16 = 8444;

/// One place to connect to.
#[derive(Debug)]
pub struct Endpoint {
    pub url: String,
    pub protocol: Protocol,
    /// TLS on the connection (`wss`, `tcps`, `tcp+tls`).
    pub tls: bool,
    /// For TCP: `host:port`, and the host alone (the TLS server name).
    pub host: String,
    pub port: u16,
    /// Learnt at run time: this endpoint never acknowledges version negotiation, so later
    /// connections do not wait for an ack again.
    pub(crate) no_version_ack: AtomicBool,
}

impl Endpoint {
    /// Parses a validated URL; the error names the URL and what is wrong with it.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        // Errors show the URL without userinfo or query (tokens live there).
        let shown = crate::telemetry::redact::masked(url);
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            format!("'{shown}' has no scheme (use ws://, wss://, tcp://, tcps://)")
        })?;
        let (protocol, tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "ws" => (Protocol::WebSocket, false, 80),
            "wss" => (Protocol::WebSocket, true, 443),
            "tcp" => (Protocol::Tcp, false, DEFAULT_TCP_PORT),
            "tcps" | "tcp+tls" => (Protocol::Tcp, true, DEFAULT_TCP_PORT),
            other => {
                return Err(format!(
                    "'{shown}': the gateway speaks ws://, wss://, tcp://, tcps:// or tcp+tls://, not {other}://"
                ))
            }
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("'{shown}' has no usable host[:port]"))?;
        Ok(Endpoint {
            url: url.to_owned(),
            protocol,
            tls,
            host: host.to_owned(),
            port: port.unwrap_or(default_port),
            no_version_ack: AtomicBool::new(false),
        })
    }

    /// A copy for another connection of a pool (what was learnt so far comes along).
    pub fn duplicate(&self) -> Endpoint {
        Endpoint {
            url: self.url.clone(),
            protocol: self.protocol,
            tls: self.tls,
            host: self.host.clone(),
            port: self.port,
            no_version_ack: AtomicBool::new(self.skips_version_ack()),
        }
    }

    pub(crate) fn skips_version_ack(&self) -> bool {
        self.no_version_ack.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_no_version_ack(&self) {
        self.no_version_ack.store(true, Ordering::Relaxed);
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.is_empty() {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Some((host, Some(port.parse().ok()?))),
        Some(_) => None,
        None => Some((authority, None)),
    }
}

/// The order endpoints are tried in. With `auto_select`, endpoints of the preferred
/// protocol come first (configured order kept within each group) and every endpoint is
/// a candidate; without it only the first configured endpoint is used. The endpoint
/// that last connected is tried first next time.
#[derive(Debug, Clone)]
pub struct Order {
    ranked: Vec<usize>,
    last_good: Option<usize>,
}

impl Order {
    pub fn new(endpoints: &[Endpoint], preferred: Protocol, auto_select: bool) -> Order {
        let mut ranked: Vec<usize> = (0..endpoints.len()).collect();
        if auto_select {
            // A stable sort keeps the configured order inside each protocol group.
            ranked.sort_by_key(|&i| endpoints[i].protocol != preferred);
        } else {
            ranked.truncate(1);
        }
        Order {
            ranked,
            last_good: None,
        }
    }

    /// Indices to try, in order.
    pub fn attempts(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.ranked.len());
        if let Some(good) = self.last_good {
            out.push(good);
        }
        out.extend(
            self.ranked
                .iter()
                .copied()
                .filter(|&i| Some(i) != self.last_good),
        );
        out
    }

    pub fn remember(&mut self, index: usize) {
        self.last_good = Some(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(urls: &[&str]) -> Vec<Endpoint> {
        urls.iter().map(|u| Endpoint::parse(u).expect(u)).collect()
    }

    #[test]
    fn parses_schemes_hosts_and_default_ports() {
        let e = Endpoint::parse("tcps://gw.example.com").expect("tcps");
        assert_eq!(
            (e.protocol, e.tls, e.host.as_str(), e.port),
            (Protocol::Tcp, true, "gw.example.com", 8444)
        );
        let e = Endpoint::parse("tcp+tls://10.0.0.1:9000/x").expect("tcp+tls");
        assert_eq!((e.tls, e.host.as_str(), e.port), (true, "10.0.0.1", 9000));
        let e = Endpoint::parse("ws://[::1]:8443/mcp").expect("ws v6");
        assert_eq!(
            (e.protocol, e.tls, e.host.as_str(), e.port),
            (Protocol::WebSocket, false, "::1", 8443)
        );
        assert!(Endpoint::parse("http://x").is_err());
        assert!(Endpoint::parse("tcp://:80").is_err());
        assert!(Endpoint::parse("tcp://host:notaport").is_err());
    }

    #[test]
    fn preferred_protocol_first_then_last_good_first() {
        let e = eps(&["ws://a", "tcp://b", "wss://c", "tcps://d"]);
        let mut order = Order::new(&e, Protocol::Tcp, true);
        assert_eq!(order.attempts(), vec![1, 3, 0, 2]);
        order.remember(2);
        assert_eq!(order.attempts(), vec![2, 1, 3, 0]);
        let order = Order::new(&e, Protocol::WebSocket, true);
        assert_eq!(order.attempts(), vec![0, 2, 1, 3]);
    }

    #[test]
    fn without_auto_select_only_the_first_endpoint() {
        let e = eps(&["tcp://b", "ws://a"]);
        assert_eq!(
            Order::new(&e, Protocol::WebSocket, false).attempts(),
            vec![0]
        );
    }
}
