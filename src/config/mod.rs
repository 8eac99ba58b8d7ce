//! Validated configuration: the plain structs every other module receives.
//!
//! Owns the merge of file → environment → flags (`load`) into these structs, once, at
//! start-up. Nothing outside `config/` reads the environment or the YAML. The serde mirror
//! of what users write lives in `raw.rs`; the `MCP_*` table in `env.rs`. This module never
//! does network I/O and never starts tasks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The whole, validated configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub version: u32,
    pub servers: Vec<ServerConfig>,
    pub local: LocalConfig,
    pub logging: LoggingConfig,
}

/// One upstream MCP server reached directly (or, with `connection_mode: gateway`, through
/// the gateway).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    pub connection_mode: ConnectionMode,
    pub target: ServerTarget,
    /// Restart (stdio) / reconnect (network) policy for this server.
    pub reconnect: ReconnectPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionMode {
    #[default]
    Direct,
    Gateway,
}

/// Where a server lives.
#[derive(Debug, Clone)]
pub enum ServerTarget {
    /// A child process speaking newline-delimited JSON-RPC on its stdio.
    Stdio(StdioCommand),
    /// A network address (`http(s)://`, `ws(s)://`, `tcp://` …); the scheme decides the
    /// transport.
    Url(String),
    /// Try these candidates in order and use the first that answers as MCP.
    AutoDetect {
        candidates: Vec<String>,
        fallback_gateway: bool,
    },
}

/// A child process to spawn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioCommand {
    pub program: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
}

/// Exponential backoff with jitter; `max_attempts: None` retries forever.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    pub initial_delay: Duration,
    pub max_delay: Duration,
    pub multiplier: f64,
    pub max_attempts: Option<u32>,
    pub jitter: f64,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(1000),
            max_delay: Duration::from_millis(60_000),
            multiplier: 2.0,
            max_attempts: Some(10),
            jitter: 0.1,
        }
    }
}

/// The client-facing side: limits and timeouts that apply to every request.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalConfig {
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub max_queued_requests: usize,
    /// Largest single JSON-RPC message (one line) accepted from either side, in bytes.
    pub max_message_size: usize,
    pub read_buffer_size: usize,
    pub write_buffer_size: usize,
    /// How long shutdown waits for in-flight requests, and then for a child to exit after
    /// its stdin is closed, before it is killed.
    pub shutdown_grace: Duration,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_millis(30_000),
            max_concurrent_requests: 100,
            max_queued_requests: 100,
            max_message_size: 10 * 1024 * 1024,
            read_buffer_size: 65_536,
            write_buffer_size: 65_536,
            shutdown_grace: Duration::from_millis(2_000),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// A `tracing` filter directive: `trace`, `debug`, `info`, `warn`, `error`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Json,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

// ---- temporary: replaced by the full loader ----
#[derive(Debug, Clone, Default)]
pub struct FlagOverrides {
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    pub stdio_command: Option<Vec<String>>,
    pub gateway_url: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub config_path: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub flags: FlagOverrides,
}

impl LoadOptions {
    pub fn from_process_env() -> Self {
        Self {
            env: std::env::vars_os()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    )
                })
                .collect(),
            ..Self::default()
        }
    }
}

#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub source: Option<PathBuf>,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let mut config = Config::default();
    if let Some(words) = &opts.flags.stdio_command {
        let program = words.first().cloned().unwrap_or_default();
        config.servers.push(ServerConfig {
            name: program.clone(),
            connection_mode: ConnectionMode::Direct,
            target: ServerTarget::Stdio(StdioCommand {
                program,
                args: words[1..].to_vec(),
                ..Default::default()
            }),
            reconnect: ReconnectPolicy::default(),
        });
    }
    if let Some(l) = &opts.flags.log_level {
        config.logging.level = l.clone();
    }
    for (k, v) in &opts.env {
        match k.as_str() {
            "MCP_LOGGING_LEVEL" => config.logging.level = v.clone(),
            "MCP_LOCAL_REQUEST_TIMEOUT_MS" => {
                config.local.request_timeout = Duration::from_millis(v.parse().unwrap_or(30000))
            }
            "MCP_LOCAL_MAX_QUEUED_REQUESTS" => {
                config.local.max_queued_requests = v.parse().unwrap_or(100)
            }
            "MCP_LOCAL_MAX_MESSAGE_SIZE" => {
                config.local.max_message_size = v.parse().unwrap_or(10485760)
            }
            "MCP_LOGGING_FORMAT" if v == "text" => config.logging.format = LogFormat::Text,
            _ => {}
        }
    }
    Ok(Loaded {
        config,
        source: None,
        warnings: vec![],
    })
}

pub fn render_effective(cfg: &Config) -> String {
    format!("{cfg:#?}")
}
