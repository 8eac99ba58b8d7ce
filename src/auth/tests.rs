//! Tests for the bearer lookup order, mTLS file discovery and error texts.

use std::time::Duration;

use super::*;
use crate::config::{GatewayEndpoint, LoadBalancer, PoolConfig, RawAuth, ReconnectPolicy};

pub(super) fn gateway(auth_type: &str, auth: RawAuth) -> GatewayConfig {
    GatewayConfig {
        endpoints: vec![GatewayEndpoint {
            url: "wss://gateway.example:8443".into(),
            auth_type: auth_type.into(),
            auth: auth.clone(),
            timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(30),
            reconnect: ReconnectPolicy::default(),
            pool: Some(PoolConfig::default()),
            tls: TlsConfig::default(),
            weight: 1,
            priority: 1,
            tags: vec!["default".into()],
        }],
        protocol_preference: "websocket".into(),
        auto_select: true,
        auth_type: auth_type.into(),
        auth,
        timeout: Duration::from_secs(5),
        keepalive_interval: Duration::from_secs(30),
        reconnect: ReconnectPolicy::default(),
        pool: Some(PoolConfig::default()),
        tls: TlsConfig::default(),
        framing: "mcpb".into(),
        tcp_notifications: false,
        default_namespace: "default".into(),
        load_balancer: LoadBalancer::default(),
        circuit_breaker: None,
        namespace_routing: None,
    }
}

fn secrets(token: Option<&str>) -> Secrets {
    Secrets {
        auth_token: token.map(Secret::new),
        ..Secrets::default()
    }
}

fn token_file(dir: &tempfile::TempDir, body: &str) -> String {
    let path = dir.path().join("token");
    std::fs::write(&path, body).expect("write token file");
    path.display().to_string()
}

fn bearer(auth: RawAuth, secrets: &Secrets) -> Result<GatewayAuth, AuthError> {
    from_config(&gateway("bearer", auth), secrets, &TlsConfig::default())
}

async fn token_of(auth: GatewayAuth) -> String {
    auth.token()
        .await
        .expect("token")
        .expect("some token")
        .expose()
        .to_owned()
}

#[tokio::test]
async fn bearer_lookup_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let var = "MCP_ROUTER_TEST_AUTH_BEARER_ORDER";
    std::env::set_var(var, " from-env \n");
    let all = RawAuth {
        token_env: Some(var.into()),
        token_file: Some(token_file(&dir, "  from-file\n")),
        ..RawAuth::default()
    };
    // MCP_AUTH_TOKEN first …
    let got = bearer(all.clone(), &secrets(Some("from-mcp-auth-token"))).expect("auth");
    assert_eq!(token_of(got).await, "from-mcp-auth-token");
    // … then the variable token_env names (trimmed) …
    let got = bearer(all.clone(), &secrets(None)).expect("auth");
    assert_eq!(token_of(got).await, "from-env");
    // … then token_file (trimmed); a blank MCP_AUTH_TOKEN counts as unset.
    let file_only = RawAuth {
        token_env: Some("MCP_ROUTER_TEST_AUTH_UNSET_VARIABLE".into()),
        ..all.clone()
    };
    let got = bearer(file_only, &secrets(Some("  "))).expect("auth");
    assert_eq!(token_of(got).await, "from-file");
    std::env::remove_var(var);
}

#[test]
fn secure_key_is_refused_with_what_to_use_instead() {
    let auth = RawAuth {
        token_secure_key: Some("endpoint-0-bearer-token".into()),
        ..RawAuth::default()
    };
    let err = bearer(auth, &secrets(Some("s3cret-token"))).expect_err("no store");
    assert_eq!(
        err.to_string(),
        "auth.token_secure_key is set, but the secure token store is not available in this build; use token_env, token_file or MCP_AUTH_TOKEN"
    );
}

#[test]
fn no_token_anywhere_has_the_original_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    for auth in [
        RawAuth::default(),
        RawAuth {
            token_env: Some("MCP_ROUTER_TEST_AUTH_NEVER_SET".into()),
            token_file: Some(token_file(&dir, " \n")),
            ..RawAuth::default()
        },
    ] {
        let err = bearer(auth, &secrets(None)).expect_err("no token");
        assert_eq!(
            err.to_string(),
            "no auth token found (check token_secure_key, MCP_AUTH_TOKEN env var, or token_file config)"
        );
    }
}

#[test]
fn unreadable_token_file_is_named() {
    let auth = RawAuth {
        token_file: Some("/nonexistent/mcp-router/token".into()),
        ..RawAuth::default()
    };
    let err = bearer(auth, &secrets(None)).expect_err("unreadable");
    assert!(
        err.to_string()
            .starts_with("auth.token_file /nonexistent/mcp-router/token: cannot be read"),
        "{err}"
    );
}

#[test]
fn home_is_expanded() {
    if let Some(home) = dirs::home_dir() {
        assert_eq!(expand_home("~/t/token"), home.join("t/token"));
    }
    assert_eq!(expand_home("/abs/token"), PathBuf::from("/abs/token"));
}

#[tokio::test]
async fn mtls_files_from_auth_or_tls_and_no_token() {
    let mut gw = gateway(
        "mtls",
        RawAuth {
            client_cert: Some("/a/cert.pem".into()),
            ..RawAuth::default()
        },
    );
    assert_eq!(mtls_files(&gw), None);
    assert!(matches!(
        from_config(&gw, &Secrets::default(), &gw.tls),
        Err(AuthError::MtlsFilesMissing)
    ));
    gw.tls.client_key = Some("/t/key.pem".into());
    gw.tls.client_cert = Some("/t/cert.pem".into());
    // gateway.auth wins over gateway.tls, key by key.
    assert_eq!(
        mtls_files(&gw),
        Some(("/a/cert.pem".into(), "/t/key.pem".into()))
    );
    let auth = from_config(&gw, &secrets(Some("ignored")), &gw.tls).expect("mtls");
    assert!(matches!(auth, GatewayAuth::Mtls));
    assert!(auth.token().await.expect("token").is_none());
    assert!(auth
        .refresh_after_rejection()
        .await
        .expect("refresh")
        .is_none());
}

#[tokio::test]
async fn bearer_has_nothing_new_after_rejection_and_hides_the_token() {
    let auth = bearer(RawAuth::default(), &secrets(Some("s3cret-token"))).expect("auth");
    assert!(auth
        .refresh_after_rejection()
        .await
        .expect("refresh")
        .is_none());
    assert!(!format!("{auth:?}").contains("s3cret-token"));
}

#[test]
fn unknown_type_is_named() {
    let gw = gateway("kerberos", RawAuth::default());
    let err = from_config(&gw, &Secrets::default(), &gw.tls).expect_err("unknown");
    assert!(err.to_string().contains("'kerberos'"), "{err}");
}

#[test]
fn setup_errors_never_carry_secrets() {
    let secret = "s3cret-value-xyz";
    let all = Secrets {
        auth_token: Some(Secret::new(secret)),
        client_secret: Some(Secret::new(secret)),
        oauth_password: Some(Secret::new(secret)),
    };
    let oauth = |f: fn(&mut RawAuth)| {
        let mut auth = RawAuth {
            client_id: Some("router".into()),
            token_endpoint: Some("https://idp.example/token".into()),
            ..RawAuth::default()
        };
        f(&mut auth);
        gateway("oauth2", auth)
    };
    let failing = [
        gateway(
            "bearer",
            RawAuth {
                token_secure_key: Some("k".into()),
                ..RawAuth::default()
            },
        ),
        oauth(|a| a.client_secret_secure_key = Some("k".into())),
        oauth(|a| a.token_endpoint = None),
        oauth(|a| a.grant_type = Some("implicit".into())),
        oauth(|a| {
            a.grant_type = Some("password".into());
            a.username = Some("me".into());
            a.password_secure_key = Some("k".into());
        }),
    ];
    for gw in failing {
        let err = from_config(&gw, &all, &gw.tls).expect_err("fails");
        assert!(!err.to_string().contains(secret), "{err}");
        assert!(!format!("{err:?}").contains(secret), "{err:?}");
    }
}
