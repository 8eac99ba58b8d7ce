//! `mcp-router config check`: validate, then show the effective configuration.

use std::io::Write;

use crate::config::{self, LoadOptions};

pub fn run(opts: &LoadOptions) -> anyhow::Result<i32> {
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
            Ok(0)
        }
        Err(e) => {
            writeln!(err, "configuration invalid:\n{e}")?;
            Ok(2)
        }
    }
}
