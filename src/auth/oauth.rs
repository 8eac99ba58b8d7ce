//! The OAuth2 client for the gateway: `client_credentials` and `password` grants against
//! `auth.token_endpoint`, a cached access token refreshed before it expires, and a forced
//! refresh after the gateway rejects one.
//!
//! Hand-written (one form POST with reqwest) rather than the `oauth2` crate: that crate's
//! errors drop the HTTP status we must report, it requires `token_type` in the response
//! (some issuers omit it; the original never read it), and it would add chrono, sha2 and
//! getrandom to the build for two grant types.
//!
//! Owns: the request form, the response parsing, the cache. Does not own: where the token
//! goes (the gateway transports), nor TLS settings (`net::tls`). No background task: a
//! refresh happens inside the call that needs it.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{is_set, named_env, non_empty, AuthError};
use crate::config::{RawAuth, Secret, Secrets, TlsConfig};

/// Refresh this long before expiry at most (the original's 30 s buffer) …
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// … or this fraction of the lifetime, when that is smaller (short-lived tokens would
/// otherwise be refreshed on every call).
const REFRESH_FRACTION: u32 = 10;
/// The whole token request, connect included. Token endpoints answer in milliseconds; a
/// slow one should fail the connect attempt rather than hang it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An OAuth2 client with a token cache. Cheap to share behind an `Arc`.
pub struct OAuthClient {
    endpoint: String,
    client_id: String,
    client_secret: Option<Secret>,
    grant: Grant,
    /// `scopes` joined by spaces, or `scope` as written.
    scope: Option<String>,
    http: reqwest::Client,
    /// Held across the token request on purpose: concurrent callers wait for the one fetch
    /// in flight instead of each starting their own.
    cache: Mutex<Option<Cached>>,
}

enum Grant {
    ClientCredentials,
    Password { username: String, password: Secret },
}

struct Cached {
    token: Secret,
    /// When the request that produced it was sent (lifetimes count from there).
    fetched_at: Instant,
    /// `None`: the endpoint gave no lifetime; kept until the gateway rejects it.
    refresh_at: Option<Instant>,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field(
                "grant",
                &match self.grant {
                    Grant::ClientCredentials => "client_credentials",
                    Grant::Password { .. } => "password",
                },
            )
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl OAuthClient {
    /// Reads the settings and secrets; no request is made until the first [`Self::token`].
    /// `connect_timeout`: the gateway's `connection.timeout_ms`.
    pub fn new(
        auth: &RawAuth,
        secrets: &Secrets,
        tls: &TlsConfig,
        connect_timeout: Duration,
    ) -> Result<Self, AuthError> {
        let endpoint = auth
            .token_endpoint
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::MissingSetting("token_endpoint"))?;
        let client_id = auth
            .client_id
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::MissingSetting("client_id"))?;
        // The original's order for OAuth2 secrets (its credential_loader.go): secure store
        // → the variable named in the config → the MCP_* default. (Bearer differs: there
        // MCP_AUTH_TOKEN comes before token_env.)
        if is_set(&auth.client_secret_secure_key) {
            return Err(AuthError::SecureStoreUnavailable {
                key: "client_secret_secure_key",
                instead: "client_secret_env or MCP_CLIENT_SECRET",
            });
        }
        let client_secret = auth
            .client_secret_env
            .as_deref()
            .and_then(named_env)
            .or_else(|| secrets.client_secret.as_ref().and_then(non_empty));
        let grant = match auth.grant_type.as_deref().unwrap_or("client_credentials") {
            "" | "client_credentials" => {
                // A confidential client cannot authenticate without its secret; saying so
                // now beats a 401 from the endpoint later.
                if client_secret.is_none() {
                    return Err(AuthError::NoClientSecret);
                }
                Grant::ClientCredentials
            }
            "password" => {
                let username = auth
                    .username
                    .clone()
                    .filter(|s| !s.is_empty())
                    .ok_or(AuthError::MissingSetting("username"))?;
                if is_set(&auth.password_secure_key) {
                    return Err(AuthError::SecureStoreUnavailable {
                        key: "password_secure_key",
                        instead: "password_env or MCP_OAUTH_PASSWORD",
                    });
                }
                let password = auth
                    .password_env
                    .as_deref()
                    .and_then(named_env)
                    .or_else(|| secrets.oauth_password.as_ref().and_then(non_empty))
                    .ok_or(AuthError::NoPassword)?;
                Grant::Password { username, password }
            }
            other => return Err(AuthError::UnknownGrant(other.to_owned())),
        };
        let scope = match (&auth.scopes, &auth.scope) {
            (Some(list), _) if !list.is_empty() => Some(list.join(" ")),
            (_, Some(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            _ => None,
        };
        // Pins in the gateway's TLS settings describe the gateway's key, not the identity
        // provider's: applying them here would fail every token request.
        let tls = TlsConfig {
            pinned_spki_sha256: Vec::new(),
            ..tls.clone()
        };
        let setup = |reason: String| AuthError::ClientSetup {
            url: endpoint.clone(),
            reason,
        };
        let tls_config = crate::net::tls::client_config(&tls, &[b"http/1.1"]).map_err(setup)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls_config).clone())
            // A redirected POST would carry the client secret to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| setup(format!("HTTP client setup failed: {e}")))?;
        Ok(Self {
            endpoint,
            client_id,
            client_secret,
            grant,
            scope,
            http,
            cache: Mutex::new(None),
        })
    }

    /// The cached token, or a fresh one when there is none or it is close to expiry.
    pub async fn token(&self) -> Result<Secret, AuthError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if c.refresh_at.is_none_or(|at| Instant::now() < at) {
                return Ok(c.token.clone());
            }
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(token)
    }

    /// Drops the cached token and fetches another. When several callers report the same
    /// rejection, only the first fetches: a token fetched after this call began is new
    /// enough, and is shared.
    pub async fn refresh_after_rejection(&self) -> Result<Secret, AuthError> {
        let asked = Instant::now();
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if c.fetched_at > asked {
                return Ok(c.token.clone());
            }
        }
        *cache = None;
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(token)
    }

    /// One token request. Client credentials go in the form body (`client_id` +
    /// `client_secret`), not HTTP Basic: the original router sends them that way
    /// (mcp-bridge `services/router/internal/gateway/oauth2.go`), so gateways configured
    /// for it expect them there.
    async fn fetch(&self) -> Result<Cached, AuthError> {
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(6);
        match &self.grant {
            Grant::ClientCredentials => form.push(("grant_type", "client_credentials")),
            Grant::Password { username, password } => {
                form.push(("grant_type", "password"));
                form.push(("username", username));
                form.push(("password", password.expose()));
            }
        }
        form.push(("client_id", &self.client_id));
        if let Some(secret) = &self.client_secret {
            form.push(("client_secret", secret.expose()));
        }
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let fetched_at = Instant::now();
        let response = self
            .http
            .post(&self.endpoint)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| AuthError::Unreachable {
                url: self.endpoint.clone(),
                reason: self.scrub(&error_chain(&e.without_url())),
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| AuthError::Unreachable {
            url: self.endpoint.clone(),
            reason: self.scrub(&error_chain(&e.without_url())),
        })?;
        if !status.is_success() {
            return Err(AuthError::Rejected {
                url: self.endpoint.clone(),
                status: status.as_u16(),
                detail: self.rejection_detail(status.as_u16(), &body),
            });
        }
        let bad = |reason: &str| AuthError::BadResponse {
            url: self.endpoint.clone(),
            status: status.as_u16(),
            reason: reason.to_owned(),
        };
        // Parsed as a generic value and picked apart by hand so that no parser message can
        // quote a piece of the response (which holds the token).
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| bad("the body is not JSON"))?;
        let token = json
            .get("access_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("no access_token string in the response"))?;
        let lifetime = match json.get("expires_in") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                    .ok_or_else(|| bad("expires_in is not a number of seconds"))?,
            ),
        };
        Ok(Cached {
            token: Secret::new(token),
            fetched_at,
            // 0 means "unknown" in practice (and the original treated it as such).
            refresh_at: lifetime
                .filter(|s| *s > 0)
                .map(|s| refresh_at(fetched_at, Duration::from_secs(s))),
        })
    }

    /// The endpoint's own `error` / `error_description` (RFC 6749 §5.2), when it sent them,
    /// plus what to check. Anything else in the body is not shown: it is not ours to trust.
    fn rejection_detail(&self, status: u16, body: &[u8]) -> String {
        let mut detail = String::new();
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
            let field = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            match (field("error"), field("error_description")) {
                (Some(e), Some(d)) => detail = format!(" ({e}: {d})"),
                (Some(e), None) => detail = format!(" ({e})"),
                _ => {}
            }
        }
        if matches!(status, 400 | 401 | 403) {
            detail.push_str(match self.grant {
                Grant::ClientCredentials => {
                    ": check auth.client_id and the client secret (client_secret_env or MCP_CLIENT_SECRET)"
                }
                Grant::Password { .. } => {
                    ": check auth.client_id, auth.username and the password (password_env or MCP_OAUTH_PASSWORD)"
                }
            });
        }
        self.scrub(&detail)
    }

    /// Replaces our secrets in text from elsewhere (an endpoint echoing a field back, a
    /// library quoting a request) with `***`.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        let password = match &self.grant {
            Grant::Password { password, .. } => Some(password),
            Grant::ClientCredentials => None,
        };
        for secret in self.client_secret.iter().chain(password) {
            if !secret.expose().is_empty() {
                out = out.replace(secret.expose(), "***");
            }
        }
        out
    }
}

/// When to fetch again: `min(30 s, 10 % of the lifetime)` before expiry.
fn refresh_at(fetched_at: Instant, lifetime: Duration) -> Instant {
    fetched_at + lifetime - REFRESH_MARGIN.min(lifetime / REFRESH_FRACTION)
}

/// The error and its causes on one line (reqwest's own text alone says only "error
/// sending request"), with a hint when the cause is TLS. Callers strip the URL first: the
/// error variant names it already.
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if let Some(hint) = crate::net::tls::explain(&text, "gateway.tls") {
        text.push_str("; ");
        text.push_str(&hint);
    }
    text
}

#[cfg(test)]
mod tests;
