//! TLS and credentials for network servers: a test CA (rcgen) trusted through
//! `tls.ca_cert_path`, an untrusted certificate refused with a clear error, the bearer
//! token sent on every request (HTTPS and WSS) and never written to the log.

use std::process::Command;

use serde_json::json;

use crate::support::tls_proxy::TlsProxy;
use crate::support::ws_bridge::WsBridge;
use crate::support::*;

const TOKEN: &str = "tok-7c1e-never-in-logs";

fn sdk_http_backend(py: &std::path::Path) -> (NetServer, u16) {
    let server = sdk_net_server(py, "streamable-http", free_port(), &[]);
    let port = server.port;
    (server, port)
}

/// A config file for one server at `url`, trusting `ca` (if given), token from a file.
fn config(dir: &tempfile::TempDir, url: &str, ca: Option<&str>) -> std::path::PathBuf {
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let tls = match ca {
        Some(pem) => {
            let ca_file = dir.path().join("ca.pem");
            std::fs::write(&ca_file, pem).unwrap();
            format!("    tls: {{ ca_cert_path: {} }}\n", ca_file.display())
        }
        None => String::new(),
    };
    let path = dir.path().join("router.yaml");
    std::fs::write(
        &path,
        format!(
            "servers:\n  - name: secure\n    url: {url}\n    auth: {{ token_file: {} }}\n{tls}",
            token_file.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn https_with_a_private_ca_and_a_bearer_token() {
    let Some(py) = sdk_python() else { return };
    let (_backend, port) = sdk_http_backend(&py);
    let proxy = TlsProxy::start(port);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &dir,
        &format!("https://localhost:{}/mcp", proxy.port),
        Some(&proxy.ca_pem),
    );
    let mut router = RouterProc::start(
        &["--config", cfg.to_str().unwrap(), "--log-level", "trace"],
        &[],
    );
    let init = router.initialize("2025-11-25");
    assert_eq!(
        init["result"]["serverInfo"]["name"], "sdk-test-server",
        "{init}"
    );
    let echo = router.request(
        json!(2),
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "over tls"}}),
    );
    assert_eq!(echo["result"]["content"][0]["text"], "over tls", "{echo}");
    let seen = proxy.seen_text().to_ascii_lowercase();
    assert!(
        seen.contains(&format!(
            "authorization: bearer {}",
            TOKEN.to_ascii_lowercase()
        )),
        "token not sent"
    );
    router.finish_ok();
    assert_no_secret(&router.stderr(), TOKEN);
}

#[test]
fn an_untrusted_certificate_is_refused_clearly() {
    let Some(py) = sdk_python() else { return };
    let (_backend, port) = sdk_http_backend(&py);
    let proxy = TlsProxy::start(port);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, &format!("https://localhost:{}/mcp", proxy.port), None);
    let mut router = RouterProc::start(&["--config", cfg.to_str().unwrap()], &[]);
    let reply = router.initialize("2025-11-25");
    let text = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("cannot reach server 'secure'")
            && text.to_ascii_lowercase().contains("certificate"),
        "{reply}"
    );
    assert!(!text.contains(TOKEN));
    assert!(
        !proxy.seen_text().contains(TOKEN),
        "a token went to an unverified server"
    );
    router.finish_ok();
}

#[test]
fn wss_with_a_private_ca_and_a_bearer_token_from_the_environment() {
    let Some(py) = sdk_python() else { return };
    let bridge = WsBridge::start(vec![
        py.display().to_string(),
        py_script("sdk_server.py").display().to_string(),
        "--transport".into(),
        "stdio".into(),
    ]);
    let backend_port: u16 = bridge
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/mcp")
        .parse()
        .unwrap();
    let proxy = TlsProxy::start(backend_port);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &proxy.ca_pem).unwrap();
    let path = dir.path().join("router.yaml");
    std::fs::write(
        &path,
        format!("servers:\n  - name: ws\n    url: wss://localhost:{}/mcp\n    tls: {{ ca_cert_path: {} }}\n", proxy.port, ca.display()),
    )
    .unwrap();
    let mut router = RouterProc::start(
        &[
            "--config",
            path.to_str().unwrap(),
            "--bearer-env",
            "WS_TOKEN",
            "--log-level",
            "trace",
        ],
        &[("WS_TOKEN", TOKEN)],
    );
    let init = router.initialize("2025-11-25");
    assert_eq!(
        init["result"]["serverInfo"]["name"], "sdk-test-server",
        "{init}"
    );
    let seen = proxy.seen_text().to_ascii_lowercase();
    assert!(
        seen.contains(&format!(
            "authorization: bearer {}",
            TOKEN.to_ascii_lowercase()
        )),
        "token not sent on the upgrade"
    );
    router.finish_ok();
    assert_no_secret(&router.stderr(), TOKEN);
}

#[test]
fn a_missing_token_variable_stops_the_start_with_its_name() {
    let err = start_error(
        Command::new(router_bin())
            .args([
                "--bearer-env",
                "NO_SUCH_TOKEN_VAR",
                "--",
                "https://127.0.0.1:9/mcp",
            ])
            .env_remove("NO_SUCH_TOKEN_VAR"),
    );
    assert!(
        err.contains("auth.token_env names NO_SUCH_TOKEN_VAR, which is not set"),
        "{err}"
    );
}
