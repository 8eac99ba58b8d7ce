//! Finding, reading and merging the configuration: file → `MCP_*` environment → flags,
//! then validation. Every problem is collected, so one run of `config check` shows them all.
//! The file is the router's YAML, or another client's `mcpServers` JSON (told apart by
//! content); `servers_from:` adds the servers of such JSON files after `servers:`.
//!
//! The process environment is read only by `LoadOptions::from_process_env`; everything
//! else works on the values it is given, so tests can drive it without touching globals.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::env::{self, Kind};
use super::flags::{command_server, ServerFlag};
use super::mcp_json::{self, Sniff};
use super::raw::{RawAuth, RawConfig};
use super::validate::{self, Problems};
use super::{Config, Secret};

/// The file name looked for in each search directory.
pub const FILE_NAME: &str = "mcp-router.yaml";

/// What `load` reads: an explicit file, the environment, the flags.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config PATH`: must exist.
    pub config_path: Option<PathBuf>,
    /// `MCP_*` variables (name, value).
    pub env: Vec<(String, String)>,
    /// Directories searched for `mcp-router.yaml` when no file is named.
    pub search_dirs: Vec<PathBuf>,
    pub flags: FlagOverrides,
}

/// Command-line settings; they beat the environment and the file.
#[derive(Debug, Clone, Default)]
pub struct FlagOverrides {
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    /// `mcp-router -- CMD ARGS…`: route to this one stdio server instead of `servers:`.
    pub stdio_command: Option<Vec<String>>,
    /// `--server NAME=COMMAND-OR-URL` (repeatable): these servers instead of `servers:`
    /// and `servers_from:`; not together with `stdio_command`.
    pub servers: Vec<ServerFlag>,
    pub gateway_url: Option<String>,
    /// `--header 'Name: value'`: added to every network server's requests.
    pub headers: Vec<(String, String)>,
    /// `--bearer-env VAR`: the bearer token for every network server comes from `$VAR`.
    pub bearer_env: Option<String>,
}

impl LoadOptions {
    /// The process's `MCP_*` variables and the standard search path: `.`,
    /// `~/.config/claude-cli/`, `~/.config/mcp/`, `/etc/mcp/`.
    pub fn from_process_env() -> Self {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("MCP_"))
            .collect();
        let mut search_dirs = vec![PathBuf::from(".")];
        if let Some(home) = dirs::home_dir() {
            search_dirs.push(home.join(".config/claude-cli"));
            search_dirs.push(home.join(".config/mcp"));
        }
        search_dirs.push(PathBuf::from("/etc/mcp"));
        Self {
            config_path: None,
            env,
            search_dirs,
            flags: FlagOverrides::default(),
        }
    }
}

/// A loaded configuration and what the user should know about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The file read, if any.
    pub source: Option<PathBuf>,
    /// Unknown keys, ignored settings, risky choices, and keys set that do nothing yet
    /// (`inert.rs`), each named once.
    pub warnings: Vec<String>,
}

/// Why the configuration cannot be used: every problem found, one per line.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub source_file: Option<PathBuf>,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source_file {
            Some(p) => write!(f, "configuration {} is not valid:", p.display())?,
            None => f.write_str("configuration is not valid:")?,
        }
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Loads, merges and validates the configuration.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let mut problems = Problems::default();
    let source = locate(opts).map_err(|e| ConfigError {
        source_file: None,
        problems: vec![e],
    })?;
    let fail = |problems: Vec<String>| ConfigError {
        source_file: source.clone(),
        problems,
    };
    let mut raw = match &source {
        Some(path) => read_file(path, &mut problems.warnings).map_err(|e| fail(vec![e]))?,
        None => RawConfig::default(),
    };
    // The servers skip the tree (no variable or flag below sets one), so what only they
    // carry (where an entry came from) survives.
    let mut file_servers = raw.servers.take();
    let mut tree = serde_yaml_ng::to_value(&raw).map_err(|e| fail(vec![e.to_string()]))?;
    let mut secrets = super::Secrets::default();
    apply_env(&opts.env, &mut tree, &mut secrets, &mut problems);
    apply_flags(&opts.flags, &mut tree);
    if !problems.errors.is_empty() {
        return Err(fail(problems.errors));
    }
    let mut raw: RawConfig =
        serde_yaml_ng::from_value(tree).map_err(|e| fail(vec![e.to_string()]))?;
    let flags = &opts.flags;
    let command = flags.stdio_command.as_ref().filter(|w| !w.is_empty());
    if command.is_some() && !flags.servers.is_empty() {
        return Err(fail(vec![
            "--server and `-- COMMAND` both name the servers to route to: use one (several --server flags, or one `-- COMMAND`)".into(),
        ]));
    }
    if let Some(words) = command {
        raw.servers = Some(vec![command_server(words)]);
    } else if !flags.servers.is_empty() {
        raw.servers = Some(flags.servers.iter().map(ServerFlag::to_raw).collect());
    } else {
        if let Some(list) = &raw.servers_from {
            let base = source.as_deref().and_then(Path::parent);
            let included = mcp_json::include(list, base, &mut problems.warnings).map_err(&fail)?;
            file_servers.get_or_insert_with(Vec::new).extend(included);
        }
        raw.servers = file_servers;
    }
    for server in raw.servers.iter_mut().flatten() {
        if !opts.flags.headers.is_empty() {
            let headers = server.headers.get_or_insert_with(Default::default);
            for (k, v) in &opts.flags.headers {
                headers.insert(k.clone(), v.clone());
            }
        }
        if let Some(var) = &opts.flags.bearer_env {
            server.auth = Some(RawAuth {
                token_env: Some(var.clone()),
                ..RawAuth::default()
            });
        }
    }
    let mut config = validate::validate(&raw, &mut problems);
    config.secrets = secrets;
    if !problems.errors.is_empty() {
        return Err(fail(problems.errors));
    }
    let mut warnings = problems.warnings;
    // The merged tree, so keys set through the environment or a flag count too.
    warnings.extend(super::inert::notes(&raw));
    Ok(Loaded {
        config,
        source,
        warnings,
    })
}

/// `--config`, then `$MCP_ROUTER_CONFIG` (both must exist), then the search path.
fn locate(opts: &LoadOptions) -> Result<Option<PathBuf>, String> {
    let from_env = opts
        .env
        .iter()
        .find(|(k, v)| k == "MCP_ROUTER_CONFIG" && !v.is_empty())
        .map(|(_, v)| PathBuf::from(v));
    let (explicit, how) = match (&opts.config_path, from_env) {
        (Some(p), _) => (Some(p.clone()), "--config"),
        (None, Some(p)) => (Some(p), "MCP_ROUTER_CONFIG"),
        (None, None) => (None, ""),
    };
    if let Some(path) = explicit {
        return match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(path)),
            Ok(_) => Err(format!("{how} {}: is not a file", path.display())),
            Err(e) => Err(format!(
                "{how} {}: cannot be read ({e}); check the path, or run without it to use the defaults",
                path.display()
            )),
        };
    }
    Ok(opts
        .search_dirs
        .iter()
        .map(|d| d.join(FILE_NAME))
        .find(|p| p.is_file()))
}

/// Parses the file: an `mcpServers` JSON file is its servers; anything else is the
/// router's YAML, whose unknown keys become warnings naming the nearest valid key.
fn read_file(path: &Path, warnings: &mut Vec<String>) -> Result<RawConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    match mcp_json::sniff(&text) {
        Sniff::McpServers(json) => {
            let label = path.display().to_string();
            return Ok(RawConfig {
                servers: Some(mcp_json::parse(&json, &label, warnings)?),
                ..RawConfig::default()
            });
        }
        Sniff::NotJson(e) if is_json => {
            return Err(format!("not valid JSON: {e} (a .json file is read as the mcpServers JSON of other MCP clients)"));
        }
        Sniff::OtherJson if is_json && !has_router_key(&text) => {
            return Err("no mcpServers (or servers) object: a .json file is read as the JSON other MCP clients use, {\"mcpServers\": {\"NAME\": {\"command\": …, \"args\": […]}}}".into());
        }
        _ => {}
    }
    if let Ok(tree) = serde_yaml_ng::from_str::<Value>(&text) {
        if let Some(hint) = mcp_json::yaml_hint(&tree) {
            return Err(hint);
        }
    }
    parse_text(&text, warnings)
}

/// A JSON object with a top-level key of the router's own schema (a router file in JSON).
fn has_router_key(text: &str) -> bool {
    let Ok(serde_json::Value::Object(top)) = serde_json::from_str(&mcp_json::strip_jsonc(text))
    else {
        return false;
    };
    RawConfig::known_paths()
        .iter()
        .filter(|k| !k.contains(['.', '[']))
        .any(|k| {
            top.contains_key(k.as_str()) || (k == "direct_clients" && top.contains_key("direct"))
        })
}

pub(super) fn parse_text(text: &str, warnings: &mut Vec<String>) -> Result<RawConfig, String> {
    if text.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    let mut unknown = BTreeSet::new();
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let raw: Option<RawConfig> = serde_ignored::deserialize(de, |path| {
        unknown.insert(normalize_path(&path.to_string()));
    })
    .map_err(|e| e.to_string())?;
    if !unknown.is_empty() {
        let known = RawConfig::known_paths();
        for key in unknown {
            warnings.push(match suggest(&key, &known) {
                Some(s) => format!("unknown key '{key}' is ignored; did you mean '{s}'?"),
                None => format!("unknown key '{key}' is ignored"),
            });
        }
    }
    // A file holding only comments deserializes to `None`.
    Ok(raw.unwrap_or_default())
}

/// `servers.0.nme` → `servers[].nme` (serde_ignored also writes `?` for each `Option`);
/// the Go alias `direct.` → `direct_clients.`.
fn normalize_path(path: &str) -> String {
    let mut out = String::new();
    for part in path.split('.').filter(|p| *p != "?") {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str("[]");
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    match out.strip_prefix("direct.") {
        Some(rest) => format!("direct_clients.{rest}"),
        None => out,
    }
}

/// The nearest known key: a sibling with a close name, else a close full path.
pub(super) fn suggest(key: &str, known: &[String]) -> Option<String> {
    let (parent, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let sibling = known
        .iter()
        .filter(|k| k.rsplit_once('.').map_or("", |(p, _)| p) == parent)
        .map(|k| {
            (
                strsim::jaro_winkler(leaf, k.rsplit_once('.').map_or(k, |(_, l)| l)),
                k,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((_, k)) = sibling {
        return Some(k.clone());
    }
    known
        .iter()
        .map(|k| (strsim::normalized_levenshtein(key, k), k))
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.clone())
}

/// Applies `MCP_*` variables in table order, so the result does not depend on the order
/// the environment lists them in.
fn apply_env(
    vars: &[(String, String)],
    tree: &mut Value,
    secrets: &mut super::Secrets,
    p: &mut Problems,
) {
    for row in env::ENV_VARS {
        let Some((_, value)) = vars.iter().find(|(k, _)| k == row.name) else {
            continue;
        };
        match row.kind {
            _ if row.name == "MCP_ROUTER_CONFIG" => {}
            Kind::Secret => {
                let slot = match row.name {
                    "MCP_AUTH_TOKEN" => &mut secrets.auth_token,
                    "MCP_CLIENT_SECRET" => &mut secrets.client_secret,
                    _ => &mut secrets.oauth_password,
                };
                if !value.trim().is_empty() {
                    *slot = Some(Secret::new(value.trim()));
                }
            }
            Kind::MetricsPort => match env::to_yaml(row, value) {
                Ok(port) => {
                    let host = env::get_path(tree, "metrics.endpoint")
                        .and_then(Value::as_str)
                        .and_then(|e| e.rsplit_once(':').map(|(h, _)| h.to_owned()))
                        .unwrap_or_else(|| "localhost".into());
                    let port = port.as_u64().unwrap_or_default();
                    env::set_path(tree, row.path, Value::String(format!("{host}:{port}")));
                }
                Err(e) => p.errors.push(e),
            },
            _ => match env::to_yaml(row, value) {
                Ok(v) => env::set_path(tree, row.path, v),
                Err(e) => p.errors.push(e),
            },
        }
    }
    for (k, _) in vars {
        if env::find(k).is_some() {
            continue;
        }
        // Other tools use MCP_* too (MCP_TIMEOUT …): only a near miss is worth a warning.
        if let Some(near) = env::ENV_VARS
            .iter()
            .map(|v| (strsim::jaro_winkler(k, v.name), v.name))
            .filter(|(s, _)| *s >= 0.95)
            .max_by(|a, b| a.0.total_cmp(&b.0))
        {
            p.warnings.push(format!(
                "environment variable {k} is not used; did you mean {}?",
                near.1
            ));
        }
    }
}

fn apply_flags(flags: &FlagOverrides, tree: &mut Value) {
    if let Some(level) = &flags.log_level {
        env::set_path(tree, "logging.level", Value::String(level.clone()));
    }
    if let Some(format) = &flags.log_format {
        env::set_path(tree, "logging.format", Value::String(format.clone()));
    }
    if let Some(url) = &flags.gateway_url {
        env::set_path(tree, "gateway.url", Value::String(url.clone()));
        if let Some(var) = &flags.bearer_env {
            env::set_path(tree, "gateway.auth.token_env", Value::String(var.clone()));
        }
    }
}
