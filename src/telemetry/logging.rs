//! Logging setup: `tracing` to stderr, JSON or text, at the configured level.
//!
//! Stdout is the protocol and is never a log target. Payloads are logged only at `trace`;
//! secrets never (they are not in the structs that get logged).

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

/// HTTP and WebSocket libraries print whole requests, headers included, at `trace`: that is
/// where bearer tokens live, so they never log below `debug`, whatever the level asked.
const SECRET_SAFE_CAPS: &str =
    "tungstenite=debug,tokio_tungstenite=debug,hyper=debug,hyper_util=debug,h2=debug,reqwest=debug,rustls=debug";

/// The filter for a level: the caps lower only `trace` (at any other level they would
/// *raise* those crates to `debug`).
fn directives(level: &str) -> String {
    if level.contains("trace") {
        format!("{level},{SECRET_SAFE_CAPS}")
    } else {
        level.to_owned()
    }
}

/// Installs the global subscriber. Returns an error text for a bad level directive.
pub fn init(cfg: &LoggingConfig) -> Result<(), String> {
    let filter = EnvFilter::try_new(directives(&cfg.level)).map_err(|e| {
        format!(
            "logging.level '{}' is not a valid level or filter: {e}",
            cfg.level
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(false)
        .with_file(cfg.include_caller)
        .with_line_number(cfg.include_caller);
    let result = match cfg.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A subscriber already installed (tests) is fine.
    let _ = result;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_caps_apply_only_at_trace() {
        assert_eq!(directives("info"), "info");
        assert_eq!(directives("debug"), "debug");
        let t = directives("trace");
        assert!(
            t.starts_with("trace,") && t.contains("tungstenite=debug") && t.contains("hyper=debug")
        );
    }
}
