//! The benchmark harness's shared parts: the MCP echo logic that every echo upstream
//! (`echo-http`, `echo-ws`) answers with, so the upstreams differ only in transport.

pub mod echo;

/// Prints the URL an echo upstream listens on as the first line of stdout (what
/// `bench/run` waits for), flushed.
pub fn announce(url: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{url}")?;
    out.flush()
}
