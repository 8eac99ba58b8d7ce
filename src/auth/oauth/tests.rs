//! OAuth2 client tests against a tiny in-test token endpoint (raw HTTP/1.1 on a local
//! socket): the form sent for each grant, caching, refresh before expiry and after a
//! rejection, and errors that never carry a secret.

use std::sync::{Arc, Mutex as StdMutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::auth::{from_config, tests::gateway, GatewayAuth};

const SECRET: &str = "client-s3cret-&=+";
const PASSWORD: &str = "pa ss-w0rd";

/// What the endpoint saw: one map of form fields (and the content type) per request.
type Seen = Arc<StdMutex<Vec<(String, Vec<(String, String)>)>>>;

/// Serves `responses` in order (the last one repeats), one per connection.
async fn token_endpoint(responses: Vec<(u16, String)>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/oauth/token",
        listener.local_addr().expect("addr")
    );
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut sock, _)) = listener.accept().await {
            let (status, body) = responses[n.min(responses.len() - 1)].clone();
            n += 1;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, length) = loop {
                let read = sock.read(&mut chunk).await.expect("read");
                assert!(read > 0, "client closed early");
                buf.extend_from_slice(&chunk[..read]);
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().expect("length"));
                    break (at + 4, length);
                }
            };
            while buf.len() < head_end + length {
                let read = sock.read(&mut chunk).await.expect("read body");
                buf.extend_from_slice(&chunk[..read]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let content_type = head
                .lines()
                .find_map(|l| l.strip_prefix("content-type:"))
                .unwrap_or("")
                .trim()
                .to_owned();
            let form = decode_form(&String::from_utf8_lossy(&buf[head_end..]));
            log.lock().expect("log").push((content_type, form));
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
        }
    });
    (url, seen)
}

fn decode_form(body: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("utf8")
    };
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn token_json(token: &str, expires_in: u64) -> (u16, String) {
    (
        200,
        format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{expires_in}}}"#),
    )
}

fn auth(url: &str, f: impl FnOnce(&mut RawAuth)) -> RawAuth {
    let mut auth = RawAuth {
        client_id: Some("router-id".into()),
        token_endpoint: Some(url.into()),
        ..RawAuth::default()
    };
    f(&mut auth);
    auth
}

fn secrets() -> Secrets {
    Secrets {
        client_secret: Some(Secret::new(SECRET)),
        oauth_password: Some(Secret::new(PASSWORD)),
        ..Secrets::default()
    }
}

fn client(auth: &RawAuth) -> OAuthClient {
    OAuthClient::new(
        auth,
        &secrets(),
        &TlsConfig::default(),
        Duration::from_secs(2),
    )
    .expect("client")
}

fn field<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn client_credentials_form_and_cache() {
    let (url, seen) = token_endpoint(vec![token_json("tok-1", 3600)]).await;
    let c = client(&auth(&url, |a| {
        a.scopes = Some(vec!["mcp:read".into(), "mcp:write".into()])
    }));
    assert_eq!(c.token().await.expect("token").expose(), "tok-1");
    assert_eq!(c.token().await.expect("token").expose(), "tok-1");
    let seen = seen.lock().expect("seen");
    assert_eq!(seen.len(), 1, "the second call is served from the cache");
    let (content_type, form) = &seen[0];
    assert_eq!(content_type, "application/x-www-form-urlencoded");
    assert_eq!(field(form, "grant_type"), Some("client_credentials"));
    assert_eq!(field(form, "client_id"), Some("router-id"));
    assert_eq!(field(form, "client_secret"), Some(SECRET));
    assert_eq!(field(form, "scope"), Some("mcp:read mcp:write"));
    assert_eq!(field(form, "username"), None);
}

#[tokio::test]
async fn password_grant_form() {
    let (url, seen) = token_endpoint(vec![token_json("tok-p", 3600)]).await;
    let gw = gateway(
        "oauth2",
        auth(&url, |a| {
            a.grant_type = Some("password".into());
            a.username = Some("alice".into());
            a.scope = Some("mcp".into());
        }),
    );
    // No client secret at all: a public client may use the password grant.
    let only_password = Secrets {
        oauth_password: Some(Secret::new(PASSWORD)),
        ..Secrets::default()
    };
    let auth = from_config(&gw, &only_password, &gw.tls).expect("auth");
    let token = auth.token().await.expect("token").expect("some");
    assert_eq!(token.expose(), "tok-p");
    let seen = seen.lock().expect("seen");
    let form = &seen[0].1;
    assert_eq!(field(form, "grant_type"), Some("password"));
    assert_eq!(field(form, "username"), Some("alice"));
    assert_eq!(field(form, "password"), Some(PASSWORD));
    assert_eq!(field(form, "client_id"), Some("router-id"));
    assert_eq!(field(form, "client_secret"), None);
    assert_eq!(field(form, "scope"), Some("mcp"));
}

#[tokio::test]
async fn named_variables_win_over_the_mcp_defaults() {
    let (url, seen) = token_endpoint(vec![token_json("t", 3600)]).await;
    let var = "MCP_ROUTER_TEST_OAUTH_CLIENT_SECRET_ENV";
    std::env::set_var(var, "from-named-var");
    let c = client(&auth(&url, |a| a.client_secret_env = Some(var.into())));
    c.token().await.expect("token");
    std::env::remove_var(var);
    assert_eq!(
        field(&seen.lock().expect("seen")[0].1, "client_secret"),
        Some("from-named-var")
    );
}

#[tokio::test]
async fn refetched_when_near_expiry() {
    let (url, seen) = token_endpoint(vec![token_json("old", 1), token_json("new", 3600)]).await;
    let c = client(&auth(&url, |_| {}));
    assert_eq!(c.token().await.expect("token").expose(), "old");
    // 1 s lifetime: refreshed 100 ms (10 %) before expiry, not 30 s before.
    assert_eq!(c.token().await.expect("token").expose(), "old");
    assert_eq!(seen.lock().expect("seen").len(), 1);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(c.token().await.expect("token").expose(), "new");
    assert_eq!(seen.lock().expect("seen").len(), 2);
}

#[test]
fn refresh_point_is_the_smaller_margin() {
    let t = Instant::now();
    assert_eq!(
        refresh_at(t, Duration::from_secs(3600)),
        t + Duration::from_secs(3570)
    );
    assert_eq!(
        refresh_at(t, Duration::from_secs(100)),
        t + Duration::from_secs(90)
    );
    assert_eq!(
        refresh_at(t, Duration::from_secs(1)),
        t + Duration::from_millis(900)
    );
}

#[tokio::test]
async fn concurrent_callers_share_one_fetch() {
    let (url, seen) = token_endpoint(vec![token_json("shared", 3600)]).await;
    let c = client(&auth(&url, |_| {}));
    let (a, b) = tokio::join!(c.token(), c.token());
    assert_eq!(a.expect("a").expose(), "shared");
    assert_eq!(b.expect("b").expose(), "shared");
    assert_eq!(seen.lock().expect("seen").len(), 1);
}

#[tokio::test]
async fn refresh_after_rejection_fetches_a_new_token() {
    let (url, seen) =
        token_endpoint(vec![token_json("first", 3600), token_json("second", 3600)]).await;
    let gw = gateway("oauth2", auth(&url, |_| {}));
    let auth = from_config(&gw, &secrets(), &gw.tls).expect("auth");
    assert!(matches!(auth, GatewayAuth::OAuth2(_)));
    assert_eq!(
        auth.token().await.expect("t").expect("some").expose(),
        "first"
    );
    let fresh = auth
        .refresh_after_rejection()
        .await
        .expect("refresh")
        .expect("some");
    assert_eq!(fresh.expose(), "second");
    assert_eq!(
        auth.token().await.expect("t").expect("some").expose(),
        "second"
    );
    assert_eq!(seen.lock().expect("seen").len(), 2);
}

#[tokio::test]
async fn unauthorized_names_url_and_status_but_not_the_secret() {
    let body =
        format!(r#"{{"error":"invalid_client","error_description":"secret {SECRET} is wrong"}}"#);
    let (url, _) = token_endpoint(vec![(401, body)]).await;
    let c = client(&auth(&url, |_| {}));
    let err = c.token().await.expect_err("401");
    let (shown, debug) = (err.to_string(), format!("{err:?}"));
    assert!(
        shown.contains(&url) && shown.contains("HTTP 401"),
        "{shown}"
    );
    assert!(shown.contains("invalid_client"), "{shown}");
    assert!(shown.contains("MCP_CLIENT_SECRET"), "{shown}");
    for text in [&shown, &debug, &format!("{c:?}")] {
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }
}

#[tokio::test]
async fn bad_json_and_unreachable_endpoints() {
    let (url, _) = token_endpoint(vec![
        (200, "<html>not json</html>".into()),
        (200, "{}".into()),
    ])
    .await;
    let c = client(&auth(&url, |_| {}));
    let err = c.token().await.expect_err("not json");
    assert!(
        matches!(err, AuthError::BadResponse { status: 200, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&url), "{err}");
    let err = c.token().await.expect_err("no access_token");
    assert!(err.to_string().contains("access_token"), "{err}");

    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/token", closed.local_addr().expect("addr"));
    drop(closed);
    let err = client(&auth(&url, |_| {}))
        .token()
        .await
        .expect_err("unreachable");
    assert!(matches!(err, AuthError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(!err.to_string().contains(SECRET), "{err}");
}

#[test]
fn missing_client_secret_is_reported_up_front() {
    let err = OAuthClient::new(
        &auth("http://127.0.0.1:9/token", |_| {}),
        &Secrets::default(),
        &TlsConfig::default(),
        Duration::from_secs(1),
    )
    .expect_err("no secret");
    assert!(matches!(err, AuthError::NoClientSecret), "{err}");
}
