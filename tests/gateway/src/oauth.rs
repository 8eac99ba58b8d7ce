//! The OAuth2 token endpoint (`POST /token`, form-encoded): `client_credentials` (form or
//! HTTP Basic) and `password` grants, issuing tokens the gateway accepts until they expire.

use crate::auth::Auth;
use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Endpoint settings.
pub struct OAuth {
    pub auth: Arc<Auth>,
    /// client_id → client_secret.
    pub clients: HashMap<String, String>,
    /// username → password.
    pub users: HashMap<String, String>,
    pub token_ttl: Duration,
    pub advertised_ttl_secs: u64,
}

/// Parses `A:B` pairs from the command line.
pub fn pairs(items: &[String]) -> Result<HashMap<String, String>, String> {
    items
        .iter()
        .map(|item| {
            item.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| format!("expected ID:SECRET, got {item:?}"))
        })
        .collect()
}

/// Serves the endpoint until the process exits.
pub async fn serve(listener: TcpListener, oauth: Arc<OAuth>) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let oauth = oauth.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let oauth = oauth.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, &oauth, peer).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        "Content-Type",
        "application/json".parse().expect("static header"),
    );
    headers.insert("Cache-Control", "no-store".parse().expect("static header"));
    resp
}

fn error(status: StatusCode, code: &str) -> Response<Full<Bytes>> {
    json(status, format!("{{\"error\":\"{code}\"}}"))
}

async fn handle(
    req: Request<Incoming>,
    oauth: &OAuth,
    peer: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/token" {
        return error(StatusCode::NOT_FOUND, "not_found");
    }
    if req.method() != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request");
    }
    let basic = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(decode_basic);
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::BAD_REQUEST, "invalid_request"),
    };
    let form = parse_form(&String::from_utf8_lossy(&body));
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    let ok = match grant {
        "client_credentials" => {
            let (id, secret) = match (&basic, form.get("client_id"), form.get("client_secret")) {
                (Some((id, secret)), _, _) => (id.clone(), secret.clone()),
                (None, Some(id), Some(secret)) => (id.clone(), secret.clone()),
                _ => (String::new(), String::new()),
            };
            if oauth.clients.get(&id) != Some(&secret) || id.is_empty() {
                eprintln!("[gw] oauth {peer}: client_credentials for {id:?} rejected (401)");
                return error(StatusCode::UNAUTHORIZED, "invalid_client");
            }
            format!("client {id:?}")
        }
        "password" => {
            let user = form.get("username").cloned().unwrap_or_default();
            let pass = form.get("password").cloned().unwrap_or_default();
            if oauth.users.get(&user) != Some(&pass) || user.is_empty() {
                eprintln!("[gw] oauth {peer}: password grant for {user:?} rejected (400)");
                return error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            format!("user {user:?}")
        }
        other => {
            eprintln!("[gw] oauth {peer}: unsupported grant_type {other:?}");
            return error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
        }
    };
    let token = oauth.auth.issue(oauth.token_ttl);
    eprintln!(
        "[gw] oauth {peer}: issued a token to {ok} (ttl {}s, advertised {}s)",
        oauth.token_ttl.as_secs(),
        oauth.advertised_ttl_secs
    );
    let body = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": oauth.advertised_ttl_secs,
    });
    json(StatusCode::OK, body.to_string())
}

fn decode_basic(header: &str) -> Option<(String, String)> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((percent_decode(id), percent_decode(secret)))
}

/// `application/x-www-form-urlencoded` → map (last value wins).
fn parse_form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_basic() {
        let f = parse_form("grant_type=client_credentials&client_id=a%3Ab&client_secret=x+y");
        assert_eq!(f["client_id"], "a:b");
        assert_eq!(f["client_secret"], "x y");
        assert_eq!(percent_decode("%4"), "%4");
        let b = base64::engine::general_purpose::STANDARD.encode("id:se:cret");
        assert_eq!(
            decode_basic(&format!("Basic {b}")),
            Some(("id".into(), "se:cret".into()))
        );
    }
}
