//! `mcp-router config check`: validate, then show the effective configuration, and with
//! several servers enabled a table of them (name, prefix, transport, enabled, filters).
//!
//! The table is YAML comments (`# …`), so the whole output stays a loadable file. It shows
//! the transport as the configuration decides it; nothing is connected to.

use std::io::Write;

use crate::config::{self, Config, ConnectionMode, ItemFilter, LoadOptions, ServerConfig};
use crate::config::{ServerTarget, TransportHint};
use crate::telemetry::redact;

pub fn run(opts: &LoadOptions, list_tools: bool) -> anyhow::Result<i32> {
    let mut err = std::io::stderr();
    match config::load(opts) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                writeln!(err, "warning: {w}")?;
            }
            let source = loaded.source.as_ref().map_or_else(
                || "no file (defaults, environment and flags)".to_owned(),
                |p| p.display().to_string(),
            );
            let mut out = std::io::stdout();
            writeln!(out, "# configuration OK: {source}")?;
            out.write_all(config::render_effective(&loaded.config).as_bytes())?;
            writeln!(out)?;
            if let Some(table) = servers_table(&loaded.config) {
                out.write_all(table.as_bytes())?;
            }
            if list_tools {
                return print_listing(&loaded.config);
            }
            Ok(0)
        }
        Err(e) => {
            writeln!(err, "configuration invalid:\n{e}")?;
            Ok(2)
        }
    }
}

/// `--list-tools`: what the client will see, from the servers themselves.
fn print_listing(cfg: &config::Config) -> anyhow::Result<i32> {
    let mut out = std::io::stdout();
    let listing = match super::list_tools::list(cfg) {
        Ok(l) => l,
        Err(e) => {
            writeln!(std::io::stderr(), "cannot list tools: {e:#}")?;
            return Ok(1);
        }
    };
    writeln!(out, "# tools ({})", listing.tools.len())?;
    for t in &listing.tools {
        writeln!(out, "{t}")?;
    }
    writeln!(out, "# prompts ({})", listing.prompts.len())?;
    for p in &listing.prompts {
        writeln!(out, "{p}")?;
    }
    for c in &listing.collisions {
        writeln!(out, "# name collision: {c}")?;
    }
    for p in &listing.problems {
        writeln!(std::io::stderr(), "warning: {p}")?;
    }
    Ok(0)
}

/// The servers at a glance, when more than one is enabled; `None` otherwise.
pub fn servers_table(cfg: &Config) -> Option<String> {
    let enabled = cfg.servers.iter().filter(|s| s.enabled).count();
    if enabled < 2 {
        return None;
    }
    let header = ["NAME", "PREFIX", "ENABLED", "TRANSPORT", "FILTERS"].map(String::from);
    let rows: Vec<[String; 5]> = cfg
        .servers
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.prefix.clone(),
                if s.enabled { "yes" } else { "no" }.into(),
                transport(s),
                filters(s),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!(
        "# servers: {enabled} of {} enabled (aggregate.separator: {})\n",
        cfg.servers.len(),
        cfg.aggregate.separator
    );
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::from("#");
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            line.push_str("  ");
            line.push_str(cell);
            if i + 1 < row.len() {
                line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Some(out)
}

/// How the server is reached, as the configuration decides it; URLs without userinfo or
/// query (they may carry secrets).
fn transport(s: &ServerConfig) -> String {
    if s.connection_mode == ConnectionMode::Gateway {
        return "gateway".into();
    }
    match &s.target {
        ServerTarget::Stdio(cmd) => {
            let words = std::iter::once(&cmd.program).chain(&cmd.args);
            format!("stdio: {}", shell_words::join(words))
        }
        ServerTarget::Url(url) => {
            let kind = match s.transport {
                _ if url.starts_with("ws") => "websocket",
                _ if url.starts_with("tcp") => "tcp",
                Some(TransportHint::Sse) => "sse",
                Some(_) => "streamable-http",
                None if crate::upstream::is_legacy_sse(url) => "sse",
                None => "streamable-http",
            };
            format!("{kind}: {}", redact::url(url))
        }
        ServerTarget::AutoDetect { candidates, .. } => {
            let shown: Vec<String> = candidates
                .iter()
                .map(|c| {
                    if c.contains("://") {
                        redact::url(c)
                    } else {
                        c.clone()
                    }
                })
                .collect();
            format!("auto-detect: {}", shown.join(" | "))
        }
    }
}

/// `tools: allow read_*; deny write_*`, each kind that has a filter; `-` for none.
fn filters(s: &ServerConfig) -> String {
    let parts: Vec<String> = [
        ("tools", &s.tools),
        ("prompts", &s.prompts),
        ("resources", &s.resources),
    ]
    .into_iter()
    .filter(|(_, f)| !f.is_empty())
    .map(|(kind, f)| format!("{kind}: {}", filter(f)))
    .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

fn filter(f: &ItemFilter) -> String {
    let mut out = Vec::new();
    if !f.allow.is_empty() {
        out.push(format!("allow {}", f.allow.join(",")));
    }
    if !f.deny.is_empty() {
        out.push(format!("deny {}", f.deny.join(",")));
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.yaml");
        std::fs::write(&path, yaml).unwrap();
        let opts = LoadOptions {
            config_path: Some(path),
            ..LoadOptions::default()
        };
        config::load(&opts).expect("loads").config
    }

    #[test]
    fn the_table_is_only_for_several_enabled_servers() {
        assert!(servers_table(&config("servers: [{ name: a, command: x }]\n")).is_none());
        let one_on =
            "servers:\n  - { name: a, command: x }\n  - { name: b, command: y, enabled: false }\n";
        assert!(servers_table(&config(one_on)).is_none());
    }

    #[test]
    fn the_table_masks_urls_and_names_each_transport_and_filter() {
        let table = servers_table(&config(
            "servers:\n  - { name: a, url: 'https://u:p@h/sse?k=v' }\n  - { name: b, url: 'https://h/sse', transport: streamable-http, prompts: { allow: [x*, y] } }\n  - { name: c, url: 'tcps://h:9' }\n  - { name: d, auto_detect: true, candidates: ['python s.py', 'ws://u:p@h/mcp'] }\n",
        ))
        .expect("table");
        for needle in [
            "sse: https://h/sse ",
            "streamable-http: https://h/sse ",
            "prompts: allow x*,y\n",
            "tcp: tcps://h:9 ",
            "auto-detect: python s.py | ws://h/mcp ",
        ] {
            assert!(table.contains(needle), "missing {needle:?} in:\n{table}");
        }
        assert!(!table.contains("u:p") && !table.contains("k=v"), "{table}");
        assert!(table.lines().all(|l| l.starts_with('#')), "{table}");
    }
}
