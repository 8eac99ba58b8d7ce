//! `mcp-router config check`: validate, then show the effective configuration.

use std::io::Write;

use crate::config::{self, LoadOptions};

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
