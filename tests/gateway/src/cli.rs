//! The command line of `mcp-test-gateway` (listeners, auth, TLS, fault switches).

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Which of the gateway's two TCP code paths to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TcpMode {
    /// `internal/frontends/tcp/frontend.go`: no VersionAck, HealthCheck ignored, only bare
    /// requests routed.
    Frontend,
    /// `internal/server/tcp_handler.go`: negotiation first, VersionAck, HealthCheck answered,
    /// strict request ids, `{auth_token,message}` accepted.
    Handler,
}

/// A test double of the mcp-bridge gateway, backed by a stdio MCP server.
#[derive(Debug, Parser)]
#[command(name = "mcp-test-gateway", version)]
pub struct Args {
    /// Stdio MCP server command line, split like a shell would.
    #[arg(long)]
    pub backend: String,
    /// WebSocket listener address (port 0 = any).
    #[arg(long)]
    pub ws: Option<SocketAddr>,
    /// WebSocket path; "/" accepts every path, anything else only itself (else 404).
    #[arg(long, default_value = "/")]
    pub ws_path: String,
    /// MCPB TCP listener address.
    #[arg(long)]
    pub tcp: Option<SocketAddr>,
    /// PEM certificate chain: TLS on both listeners.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA: require client certificates signed by it (mTLS).
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Accepted bearer token (repeatable).
    #[arg(long = "token")]
    pub tokens: Vec<String>,
    /// OAuth2 token endpoint address (POST /token).
    #[arg(long)]
    pub oauth: Option<SocketAddr>,
    /// OAuth2 client credentials, ID:SECRET (repeatable).
    #[arg(long = "oauth-client")]
    pub oauth_clients: Vec<String>,
    /// OAuth2 resource-owner credentials, USER:PASS (repeatable).
    #[arg(long = "oauth-user")]
    pub oauth_users: Vec<String>,
    /// Real lifetime of issued tokens.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl_secs: u64,
    /// `expires_in` announced to clients (default: --token-ttl-secs).
    #[arg(long)]
    pub advertised_ttl_secs: Option<u64>,
    /// Close a connection when the token it authenticated with expires.
    #[arg(long)]
    pub close_on_expiry: bool,
    /// Which gateway TCP code path to imitate.
    #[arg(long, value_enum, default_value_t = TcpMode::Frontend)]
    pub tcp_mode: TcpMode,
    /// Fault: accept connections and close them at once (WS: 503).
    #[arg(long)]
    pub refuse: bool,
    /// Fault: WS 401 on every upgrade; TCP "Authentication failed" on the first request.
    #[arg(long)]
    pub reject_auth: bool,
    /// Fault: sleep this long before forwarding each request.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Fault: after N answered requests, break the connection on the next one.
    #[arg(long)]
    pub drop_after: Option<u64>,
    /// WebSocket message size limit (larger: close 1009).
    #[arg(long, default_value_t = 1_048_576)]
    pub max_message: usize,
}

/// The fault switches, shared by both frontends.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    pub refuse: bool,
    pub reject_auth: bool,
    pub delay_ms: u64,
    pub drop_after: Option<u64>,
}

impl Args {
    pub fn faults(&self) -> Faults {
        Faults {
            refuse: self.refuse,
            reject_auth: self.reject_auth,
            delay_ms: self.delay_ms,
            drop_after: self.drop_after,
        }
    }
}
