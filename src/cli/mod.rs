//! The command line: parse it, load the configuration, run what was asked.
//!
//! The only module (with `main.rs`) that uses `anyhow`: everything below returns typed
//! errors, and here they become one message for the user, saying what to do next.

mod completions;
mod config_check;
mod list_tools;
mod run;
mod version;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::{self, FlagOverrides, LoadOptions, ServerFlag};

/// A fast, transparent MCP router: an MCP client starts it as a stdio server, and it
/// forwards every message to the MCP server(s) configured, and back.
#[derive(Debug, Parser)]
#[command(
    name = "mcp-router",
    disable_version_flag = true,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  mcp-router -- python server.py --flag   route to one stdio server, no config file\n  mcp-router --bearer-env TOKEN -- https://mcp.example.com/mcp   route to one remote server\n  mcp-router --server fs='npx -y @modelcontextprotocol/server-filesystem /tmp' --server docs=https://mcp.example.com/mcp   several servers as one\n  mcp-router --config ~/.cursor/mcp.json   the servers of another client's mcpServers JSON\n  MCP_AUTH_TOKEN=… mcp-router --gateway wss://gw.example.com/mcp   route through an mcp-bridge gateway\n  mcp-router --config router.yaml          route as the file says\n  mcp-router config check                  validate and show the effective configuration"
)]
pub struct Cli {
    /// Configuration file (default: $MCP_ROUTER_CONFIG, else mcp-router.yaml in ., ~/.config/claude-cli/, ~/.config/mcp/, /etc/mcp/).
    #[arg(short = 'c', long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    /// Log level: trace, debug, info, warn, error (overrides logging.level and MCP_LOGGING_LEVEL).
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,

    /// Log format: json or text (overrides logging.format and MCP_LOGGING_FORMAT).
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,

    /// Extra HTTP header for network servers, as 'Name: value' (repeatable).
    #[arg(long = "header", global = true, value_name = "'NAME: VALUE'", value_parser = parse_header)]
    headers: Vec<(String, String)>,

    /// Send 'Authorization: Bearer $VAR' to network servers.
    #[arg(long, global = true, value_name = "VAR")]
    bearer_env: Option<String>,

    /// Route through the mcp-bridge gateway at URL (ws://, wss://, tcp://, tcps://);
    /// sets gateway.url. With no servers configured, all traffic goes there.
    #[arg(long = "gateway", global = true, value_name = "URL")]
    gateway: Option<String>,

    /// A server to route to, as NAME=COMMAND or NAME=URL (repeatable; together they
    /// replace the configured servers). A URL is http(s)://, ws(s)://, tcp(s)://; anything
    /// else is a command line, split like a shell does.
    #[arg(long = "server", global = true, value_name = "NAME=COMMAND-OR-URL", value_parser = config::parse_server_flag)]
    servers: Vec<ServerFlag>,

    /// Print version information and exit.
    #[arg(short = 'v', long = "version")]
    version: bool,

    #[command(subcommand)]
    command: Option<Command>,

    /// The one MCP server to route to, instead of the configured servers: a command and its
    /// arguments (stdio), or an http(s):// or ws(s):// URL.
    #[arg(last = true, value_name = "COMMAND")]
    shorthand: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print version, build time, commit and target.
    Version,
    /// Print a shell completion script (e.g. `mcp-router completions bash >
    /// ~/.local/share/bash-completion/completions/mcp-router`).
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (e.g. `mcp-router man > ~/.local/share/man/man1/mcp-router.1`).
    Man,
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the effective settings (secrets masked).
    Check {
        /// Also start every server briefly and print the tool and prompt names the client
        /// will see (prefixed when several servers are aggregated).
        #[arg(long)]
        list_tools: bool,
    },
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err("expected 'Name: value', e.g. --header 'X-Api-Key: …'".into()),
    }
}

/// Runs the parsed command line; the return value is the process exit code.
pub fn main(cli: Cli) -> anyhow::Result<i32> {
    if cli.version || matches!(cli.command, Some(Command::Version)) {
        version::print()?;
        return Ok(0);
    }
    // Neither needs the configuration: they work on a machine with none.
    match &cli.command {
        Some(Command::Completions { shell }) => return completions::completions(*shell),
        Some(Command::Man) => return completions::man(),
        _ => {}
    }
    if !cli.servers.is_empty() && !cli.shorthand.is_empty() {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--server and `-- COMMAND` both name the servers to route to: use one (several --server NAME=COMMAND-OR-URL flags, or one `-- COMMAND`)",
            )
            .exit();
    }
    let mut opts = LoadOptions::from_process_env();
    opts.config_path = cli.config.clone();
    opts.flags = FlagOverrides {
        log_level: cli.log_level.clone(),
        log_format: cli.log_format.clone(),
        stdio_command: (!cli.shorthand.is_empty()).then(|| cli.shorthand.clone()),
        servers: cli.servers.clone(),
        gateway_url: cli.gateway.clone(),
        headers: cli.headers.clone(),
        bearer_env: cli.bearer_env.clone(),
    };
    match cli.command {
        Some(Command::Config {
            command: ConfigCommand::Check { list_tools },
        }) => config_check::run(&opts, list_tools),
        Some(Command::Version | Command::Completions { .. } | Command::Man) => Ok(0),
        None => {
            let loaded = config::load(&opts).map_err(|e| anyhow::anyhow!("{e}"))?;
            run::run(loaded)
        }
    }
}
