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
    let err = start_error(
        Command::new(router_bin())
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env_remove("MCP_ROUTER_CONFIG"),
    );
    assert!(
        err.contains("no servers and no gateway are configured")
            && err.contains("mcp-router --")
            && err.contains("--gateway"),
        "{err}"
    );
}

/// `mcp-router config check` in a clean directory with only `env` set.
fn config_check(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut cmd = Command::new(router_bin());
    cmd.current_dir(dir)
        .env("HOME", dir)
        .env_remove("MCP_ROUTER_CONFIG")
        .arg("config")
        .arg("check");
    for (k, _) in std::env::vars() {
        if k.starts_with("MCP_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).envs(env.iter().copied());
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_loads_the_seed_example_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let seed = repo_root().join("tests/golden/seed-full.yaml");
    let (code, out, err) = config_check(
        dir.path(),
        &["--config", seed.to_str().unwrap()],
        &[("MCP_AUTH_TOKEN", "tok-e2e-never-printed")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("# configuration OK: "), "{out}");
    assert!(
        out.contains("wss://mcp-gateway.example.com:8443") && out.contains("auth_token: '***'"),
        "{out}"
    );
    assert!(!out.contains("tok-e2e-never-printed") && !err.contains("tok-e2e-never-printed"));
    // No unknown key and nothing risky: the only warnings are for the seed's keys that do
    // nothing yet (metrics, the pools, the rate limit, Go memory tuning).
    assert!(!err.is_empty() && err.lines().all(is_inert_note), "{err}");
    assert_eq!(count(&err, "`metrics.enabled`"), 1, "{err}");
    assert_eq!(count(&err, "`local.request_timeout_ms`"), 0, "{err}");
}

/// A `config check` line for a key that is set but does nothing yet.
fn is_inert_note(line: &str) -> bool {
    line.starts_with("warning: `")
        && (line.contains(" is set but does nothing") || line.contains(" are set but do nothing"))
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// A file setting keys that do nothing yet, and live ones next to them.
const INERT_KEYS: &str = "\
tracing:
  enabled: true
metrics:
  enabled: true
  endpoint: localhost:9100
local:
  request_timeout_ms: 5000
  rate_limit: { requests_per_second: 10, burst: 20 }
gateway_pool:
  circuit_breaker: { enabled: true, failure_threshold: 3 }
  load_balancer: { retry_count: 2 }
direct_clients:
  default_timeout: 5s
  websocket: { ping_interval: 10s, handshake_timeout: 3s }
  http: { max_idle_conns: 4 }
advanced:
  deduplication: { enabled: true }
";

/// The inert keys `INERT_KEYS` sets, each with the reason its note must give.
const INERT_NAMED: &[(&str, &str)] = &[
    (
        "tracing.enabled",
        "tracing export (OpenTelemetry) is not built (planned: operations)",
    ),
    (
        "metrics.enabled",
        "metrics and health endpoint is not built (planned: operations)",
    ),
    (
        "metrics.endpoint",
        "metrics and health endpoint is not built (planned: operations)",
    ),
    (
        "gateway_pool.load_balancer.retry_count",
        "a request already written is never sent again",
    ),
    (
        "direct_clients.websocket.handshake_timeout",
        "direct_clients.default_timeout bounds the WebSocket connect",
    ),
    (
        "direct_clients.http.max_idle_conns",
        "the HTTP client keeps idle connections on its own",
    ),
    (
        "advanced.deduplication.enabled",
        "request deduplication is not built",
    ),
];

/// Live keys `INERT_KEYS` sets: never reported.
const LIVE_SET: &[&str] = &[
    "local.rate_limit.requests_per_second",
    "local.rate_limit.burst",
    "local.request_timeout_ms",
    "direct_clients.default_timeout",
    "direct_clients.websocket.ping_interval",
    "gateway_pool.circuit_breaker.enabled",
    "gateway_pool.circuit_breaker.failure_threshold",
];

#[test]
fn config_check_names_each_key_that_does_nothing_once_and_no_live_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inert.yaml");
    std::fs::write(&path, INERT_KEYS).unwrap();
    let (code, out, err) = config_check(dir.path(), &["-c", path.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("# configuration OK: "), "{out}");
    for (key, why) in INERT_NAMED {
        let quoted = format!("`{key}`");
        assert_eq!(count(&err, &quoted), 1, "{key} must be named once:\n{err}");
        let line = err.lines().find(|l| l.contains(&quoted)).unwrap();
        assert!(is_inert_note(line) && line.contains(why), "{key}: {line}");
    }
    for key in LIVE_SET {
        assert_eq!(count(&err, &format!("`{key}`")), 0, "{key} is live:\n{err}");
    }
    assert!(err.lines().all(is_inert_note), "{err}");

    // Defaults are never reported, and a key set through the environment is.
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    let (code, _, err) = config_check(
        dir.path(),
        &["-c", empty.to_str().unwrap()],
        &[("MCP_TRACING_ENABLED", "true")],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        count(&err, "`tracing.enabled` is set but does nothing yet"),
        1,
        "{err}"
    );
}

#[test]
fn running_names_each_key_that_does_nothing_once_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inert.yaml");
    std::fs::write(&path, INERT_KEYS).unwrap();
    let mut words = vec![
        "--config".to_owned(),
        path.display().to_string(),
        "--".into(),
    ];
    words.extend(fault_server(&[]));
    let args: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut r = RouterProc::start_in(dir, &args, &[]);
    r.initialize("2025-06-18");
    r.finish_ok();
    let log = r.stderr();
    for (key, _) in INERT_NAMED {
        assert_eq!(count(&log, &format!("`{key}`")), 1, "{key}:\n{log}");
    }
    for key in LIVE_SET {
        assert_eq!(count(&log, &format!("`{key}`")), 0, "{key} is live:\n{log}");
    }
}

#[test]
fn config_check_reports_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "logging: { level: loud }\nlocal: { request_timeout_ms: 0 }\nmetricz: {}\n",
    )
    .unwrap();
    let (code, out, err) = config_check(dir.path(), &["-c", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("logging.level: 'loud' is not one of trace, debug, info, warn, error"),
        "{err}"
    );
    assert!(
        err.contains("local.request_timeout_ms: 0 is not allowed"),
        "{err}"
    );
}

#[test]
fn config_check_follows_the_precedence_flags_env_file() {
    let dir = tempfile::tempdir().unwrap();
    // Found by the search path (the working directory), not named.
    std::fs::write(
        dir.path().join("mcp-router.yaml"),
        "logging: { level: debug, format: text }\nmetricz: {}\n",
    )
    .unwrap();
    let (code, out, err) = config_check(dir.path(), &[], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("level: debug") && out.contains("format: text"),
        "{out}"
    );
    assert!(
        err.contains("unknown key 'metricz' is ignored; did you mean 'metrics'?"),
        "{err}"
    );

    let (_, out, _) = config_check(dir.path(), &[], &[("MCP_LOGGING_LEVEL", "warn")]);
    assert!(
        out.contains("level: warn") && out.contains("format: text"),
        "{out}"
    );

    let (_, out, _) = config_check(
        dir.path(),
        &["--log-level", "error", "--log-format", "json"],
        &[("MCP_LOGGING_LEVEL", "warn")],
    );
    assert!(
        out.contains("level: error") && out.contains("format: json"),
        "{out}"
    );
}

#[test]
fn a_missing_explicit_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = config_check(dir.path(), &["--config", "/no/such/router.yaml"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--config /no/such/router.yaml: cannot be read"),
        "{err}"
    );
    let (code, _, err) = config_check(
        dir.path(),
        &[],
        &[("MCP_ROUTER_CONFIG", "/no/such/env.yaml")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("MCP_ROUTER_CONFIG /no/such/env.yaml"), "{err}");
}

#[test]
fn running_with_a_feature_not_built_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(
        &path,
        "gateway:\n  url: wss://gw.example.com\n  auth:\n    token_secure_key: gw-token\n",
    )
    .unwrap();
    let err = start_error(
        Command::new(router_bin())
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env_remove("MCP_AUTH_TOKEN")
            .args(["--config", path.to_str().unwrap()]),
    );
    assert!(
        err.contains("token_secure_key")
            && err.contains("secure token store is not available")
            && err.contains("token_env"),
        "{err}"
    );
}

/// The `# servers:` table `config check` prints after the effective configuration.
fn servers_table(out: &str) -> &str {
    out.find("# servers: ").map_or("", |at| &out[at..])
}

#[test]
fn config_check_lists_the_servers_of_a_claude_desktop_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = repo_root().join("tests/golden/claude_desktop_config.json");
    let (code, out, err) = config_check(dir.path(), &["--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.is_empty(),
        "no warning for a plain Claude Desktop file: {err}"
    );
    let golden =
        std::fs::read_to_string(repo_root().join("tests/golden/claude_desktop_config.check.txt"))
            .unwrap();
    assert_eq!(servers_table(&out), golden, "{out}");
    // The effective YAML names them in file order, with the new fields, secrets masked.
    let order: Vec<usize> = ["filesystem", "github", "sqlite", "memory", "brave-search"]
        .iter()
        .map(|n| {
            out.find(&format!("- name: {n}\n  enabled: true\n  prefix: {n}\n"))
                .expect(n)
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
    assert!(out.contains("aggregate:\n  separator: __\n"), "{out}");
    assert!(!out.contains("never_printed"), "{out}");
}

#[test]
fn config_check_lists_servers_from_included_files_and_disabled_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("clients")).unwrap();
    std::fs::write(
        dir.path().join("clients/cursor.json"),
        r#"{"mcpServers": {"remote": {"url": "https://user:PW@api.example.com/mcp?key=QSECRET"}, "off": {"command": "x", "disabled": true}}}"#,
    )
    .unwrap();
    let yaml = dir.path().join("router.yaml");
    std::fs::write(
        &yaml,
        "servers:\n  - name: local\n    command: python server.py\n    tools: { deny: [delete_*] }\nservers_from: clients/cursor.json\n",
    )
    .unwrap();
    let (code, out, err) = config_check(dir.path(), &["--config", yaml.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let table = servers_table(&out);
    assert!(
        table.starts_with("# servers: 2 of 3 enabled (aggregate.separator: __)\n"),
        "{table}"
    );
    for row in [
        [
            "local",
            "local",
            "yes",
            "stdio: python server.py",
            "tools: deny delete_*",
        ],
        [
            "remote",
            "remote",
            "yes",
            "streamable-http: https://api.example.com/mcp",
            "-",
        ],
        ["off", "off", "no", "stdio: x", "-"],
    ] {
        assert!(
            table.lines().any(|l| l
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty() && *c != "#")
                .eq(row)),
            "no row {row:?} in:\n{table}"
        );
    }
    assert!(!out.contains("QSECRET") && !out.contains("PW@"), "{out}");
}

#[test]
fn server_flags_name_the_servers_and_bad_ones_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = config_check(
        dir.path(),
        &[
            "--server",
            "fs=npx -y @modelcontextprotocol/server-filesystem /tmp",
            "--server",
            "docs=https://mcp.example.com/mcp",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let table = servers_table(&out);
    assert!(
        table.contains("stdio: npx -y @modelcontextprotocol/server-filesystem /tmp"),
        "{table}"
    );
    assert!(
        table.contains("streamable-http: https://mcp.example.com/mcp"),
        "{table}"
    );

    let (code, _, err) = config_check(dir.path(), &["--server", "no-equals-sign"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("expected NAME=COMMAND-OR-URL, e.g. --server fs="),
        "{err}"
    );

    let out = Command::new(router_bin())
        .current_dir(dir.path())
        .args(["--server", "a=x", "--", "python", "server.py"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--server and `-- COMMAND` both name the servers to route to: use one"),
        "{err}"
    );
}

/// `mcp-router ARGS` with no configuration anywhere (an empty HOME, no MCP_* variables).
fn bare(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(router_bin());
    cmd.current_dir(dir.path())
        .env("HOME", dir.path())
        .env_remove("MCP_ROUTER_CONFIG")
        .args(args);
    cmd.output().unwrap()
}

#[test]
fn completions_for_every_shell_name_the_real_commands_and_flags() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = bare(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for word in [
            "config",
            "check",
            "gateway",
            "list-tools",
            "completions",
            "man",
        ] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    // The bash script loads and registers itself, and completes a subcommand.
    let out = bare(&["completions", "bash"]);
    let script = String::from_utf8_lossy(&out.stdout).into_owned();
    let probe = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{script}\nCOMP_WORDS=(mcp-router con); COMP_CWORD=1; COMP_LINE='mcp-router con'; COMP_POINT=14; _mcp__router mcp-router con mcp-router; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        ))
        .output()
        .unwrap();
    let words = String::from_utf8_lossy(&probe.stdout);
    assert!(
        words.lines().any(|w| w == "config"),
        "{words}\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    // An unknown shell is a usage error naming the ones there are.
    let out = bare(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash, elvish, fish, powershell, zsh"));
}

#[test]
fn the_man_page_renders_with_the_commands_and_flags() {
    let out = bare(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        page.starts_with(".ie") && page.contains(".TH mcp-router 1"),
        "{page}"
    );
    assert!(page.contains(env!("CARGO_PKG_VERSION")));
    for word in ["\\-\\-gateway", "\\-\\-config", "completions", "config"] {
        assert!(page.contains(word), "no {word}");
    }
    // groff formats it without a warning, where groff is installed (-k: UTF-8 input, as man
    // reads it).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mcp-router.1");
    std::fs::write(&file, &page).unwrap();
    if let Ok(rendered) = std::process::Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-ww"])
        .arg(&file)
        .output()
    {
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(text.contains("mcp-router"), "{text}");
        assert!(
            rendered.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&rendered.stderr)
        );
    }
}
