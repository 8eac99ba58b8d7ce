//! Stamps the binary with its commit, build time and target for `mcp-router version`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    let time = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .unwrap_or_else(std::time::SystemTime::now);
    println!("cargo:rustc-env=MCP_ROUTER_GIT_COMMIT={commit}");
    println!(
        "cargo:rustc-env=MCP_ROUTER_BUILD_TIME={}",
        humantime::format_rfc3339_seconds(time)
    );
    println!(
        "cargo:rustc-env=MCP_ROUTER_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    // HEAD names the branch; a commit moves the branch's ref (or packed-refs), not HEAD,
    // so the stamp is rebuilt when any of them changes. Paths come from git, so a
    // worktree's own HEAD is watched. A path that does not exist is not named (cargo
    // would rebuild every time).
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
