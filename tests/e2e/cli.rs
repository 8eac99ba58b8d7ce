//! The command line: version, configuration errors and checks.

use std::process::Command;

use crate::support::*;

#[test]
fn version_prints_the_original_format_plus_target() {
    for arg in ["version", "-v", "--version"] {
        let out = Command::new(router_bin()).arg(arg).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "MCP Router");
        assert!(lines[1].starts_with("Version: "));
        assert!(lines[2].starts_with("Build Time: 20"));
        assert!(lines[3].starts_with("Git Commit: "));
        assert!(lines[4].starts_with("Target: "));
    }
}

#[test]
fn nothing_to_route_to_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(router_bin())
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env_remove("MCP_ROUTER_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no servers are configured") && err.contains("mcp-router --"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing but protocol on stdout");
}
