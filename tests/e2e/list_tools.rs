//! `mcp-router config check --list-tools`: the names a client will see, from the servers
//! themselves (started briefly and stopped).

use std::process::Command;

use crate::support::*;

#[test]
fn list_tools_prints_the_prefixed_names_of_every_server_and_stops_them() {
    let dir = tempfile::tempdir().unwrap();
    let echo = built_bin_dir().join("examples").join("echo_server");
    let pids = dir.path().join("pids");
    // Each server records its pid, so the test can tell they were stopped.
    let server = |name: &str| {
        format!(
            "  - name: {name}\n    command: [sh, -c, 'echo $$ >> {}; exec {}']\n",
            pids.display(),
            echo.display()
        )
    };
    let cfg = dir.path().join("r.yaml");
    std::fs::write(
        &cfg,
        format!(
            "servers:\n{}{}    tools: {{deny: [\"sl*\"]}}\n",
            server("one"),
            server("two")
        ),
    )
    .unwrap();
    let out = Command::new(router_bin())
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env_remove("MCP_ROUTER_CONFIG")
        .args(["config", "check", "--list-tools", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("# tools"))
        .skip(1)
        .take_while(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(
        listed,
        [
            "one__echo",
            "one__add",
            "one__sleep",
            "one__large",
            "two__echo",
            "two__add",
            "two__large"
        ],
        "{stdout}"
    );
    assert!(
        stdout.contains("# prompts (2)\none__greet\ntwo__greet"),
        "{stdout}"
    );
    let started = read_lines(&pids);
    assert_eq!(started.len(), 2, "{started:?}");
    for pid in started {
        let pid: u32 = pid.trim().parse().unwrap();
        assert!(
            wait_until(std::time::Duration::from_secs(5), || !alive(pid)),
            "server {pid} still runs after config check"
        );
    }
}
