//! `mcp-router version`: what this binary is, in the original's format plus the target.

use std::io::Write;

/// Prints the version block to stdout (this command's output, not the protocol).
pub fn print() -> anyhow::Result<()> {
    let text = format!(
        "MCP Router\nVersion: {}\nBuild Time: {}\nGit Commit: {}\nTarget: {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("MCP_ROUTER_BUILD_TIME"),
        env!("MCP_ROUTER_GIT_COMMIT"),
        env!("MCP_ROUTER_TARGET"),
    );
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}
