//! Gateway credentials: which token (if any) rides on the gateway connection and its
//! messages. Built once from `gateway.auth` ([`from_config`]); [`GatewayAuth::token`] is asked
//! before each connect (and per message, with `per_message_auth`), and
//! [`GatewayAuth::refresh_after_rejection`] once after a 401.
//!
//! Owns: the bearer lookup order, the OAuth2 client and its token cache (`oauth.rs`), and
//! where mTLS files may be written. Does not own: the TLS handshake (`net::tls` gets the
//! client certificate through the merged `TlsConfig`), headers and envelopes (the gateway
//! transports), the secure store (`store.rs`, not in this build yet). Secrets never appear
//! in errors, logs or `Debug`: they are [`Secret`]s, and error texts name settings, files
//! and URLs only.

pub mod oauth;

use std::path::PathBuf;

use crate::config::{GatewayConfig, Secret, Secrets, TlsConfig};

/// How the router proves itself to the gateway.
// One value per gateway, built once and shared: the OAuth2 variant's size costs nothing,
// and a Box would only add a pointer hop for callers that match on it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum GatewayAuth {
    /// A static token, sent as `Authorization: Bearer` (and in envelopes).
    Bearer(Secret),
    /// A client certificate; no token. The certificate is in the TLS configuration.
    Mtls,
    /// Tokens from an OAuth2 token endpoint, cached and refreshed before expiry.
    OAuth2(oauth::OAuthClient),
}

/// Why gateway credentials are unavailable. Texts name settings, files, URLs and HTTP
/// statuses, never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no auth token found (check token_secure_key, MCP_AUTH_TOKEN env var, or token_file config)"
    )]
    NoToken,
    #[error(
        "auth.{key} is set, but the secure token store is not available in this build; use {instead}"
    )]
    SecureStoreUnavailable {
        key: &'static str,
        instead: &'static str,
    },
    #[error("auth.token_file {}: cannot be read: {source}", .path.display())]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("auth.type: mtls needs client_cert and client_key (paths to PEM files, under gateway.auth or gateway.tls)")]
    MtlsFilesMissing,
    #[error("auth.type '{0}' is not supported: use bearer, mtls or oauth2")]
    UnknownType(String),
    #[error("auth.{0} is required for auth.type: oauth2")]
    MissingSetting(&'static str),
    #[error("auth.grant_type '{0}' is not supported: use client_credentials or password")]
    UnknownGrant(String),
    #[error("no client secret found for OAuth2 (check client_secret_secure_key, client_secret_env, or MCP_CLIENT_SECRET env var)")]
    NoClientSecret,
    #[error("no password found for OAuth2 password grant (check password_secure_key, password_env, or MCP_OAUTH_PASSWORD env var)")]
    NoPassword,
    #[error("OAuth2 token endpoint {url}: {reason}")]
    ClientSetup { url: String, reason: String },
    #[error("OAuth2 token endpoint {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("OAuth2 token endpoint {url} refused the request with HTTP {status}{detail}")]
    Rejected {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("OAuth2 token endpoint {url} answered HTTP {status} with an unusable token response: {reason}")]
    BadResponse {
        url: String,
        status: u16,
        reason: String,
    },
}

/// Builds the gateway's credentials from `gateway.auth` (`auth_type` is validated already).
/// `tls` is the merged TLS configuration; the OAuth2 token endpoint's client uses it.
pub fn from_config(
    gw: &GatewayConfig,
    secrets: &Secrets,
    tls: &TlsConfig,
) -> Result<GatewayAuth, AuthError> {
    match gw.auth_type.as_str() {
        "bearer" => bearer_token(&gw.auth, secrets).map(GatewayAuth::Bearer),
        "mtls" => match mtls_files(gw) {
            Some(_) => Ok(GatewayAuth::Mtls),
            None => Err(AuthError::MtlsFilesMissing),
        },
        "oauth2" => {
            oauth::OAuthClient::new(&gw.auth, secrets, tls, gw.timeout).map(GatewayAuth::OAuth2)
        }
        other => Err(AuthError::UnknownType(other.to_owned())),
    }
}

/// The mTLS certificate and key, each from `gateway.auth` or else `gateway.tls` (users
/// write them in either place; the original read both), `~` expanded. The caller puts them
/// into the `TlsConfig` it hands to `net::tls::client_config`.
pub fn mtls_files(gw: &GatewayConfig) -> Option<(PathBuf, PathBuf)> {
    let pick = |auth: &Option<String>, tls: &Option<PathBuf>| {
        auth.as_deref()
            .filter(|s| !s.is_empty())
            .map(expand_home)
            .or_else(|| tls.clone())
    };
    let cert = pick(&gw.auth.client_cert, &gw.tls.client_cert)?;
    let key = pick(&gw.auth.client_key, &gw.tls.client_key)?;
    Some((cert, key))
}

impl GatewayAuth {
    /// The token to send now: bearer's static one, none for mTLS, OAuth2's cached one
    /// (fetched when missing or close to expiry; concurrent callers share one fetch).
    pub async fn token(&self) -> Result<Option<Secret>, AuthError> {
        match self {
            Self::Bearer(token) => Ok(Some(token.clone())),
            Self::Mtls => Ok(None),
            Self::OAuth2(client) => client.token().await.map(Some),
        }
    }

    /// After the gateway rejected the token (401): OAuth2 drops it and fetches a fresh one;
    /// bearer and mTLS return `Ok(None)`, "nothing new to try", so the caller gives up.
    pub async fn refresh_after_rejection(&self) -> Result<Option<Secret>, AuthError> {
        match self {
            Self::Bearer(_) | Self::Mtls => Ok(None),
            Self::OAuth2(client) => client.refresh_after_rejection().await.map(Some),
        }
    }
}

/// The bearer lookup order of the original (REFERENCE §6): secure store → `MCP_AUTH_TOKEN`
/// → the variable named by `token_env` → `token_file`.
fn bearer_token(auth: &crate::config::RawAuth, secrets: &Secrets) -> Result<Secret, AuthError> {
    if is_set(&auth.token_secure_key) {
        // Failing loudly beats silently falling through to another source: the user asked
        // for the store, and a token from elsewhere would be a surprise.
        return Err(AuthError::SecureStoreUnavailable {
            key: "token_secure_key",
            instead: "token_env, token_file or MCP_AUTH_TOKEN",
        });
    }
    if let Some(token) = secrets.auth_token.as_ref().and_then(non_empty) {
        return Ok(token);
    }
    if let Some(token) = auth.token_env.as_deref().and_then(named_env) {
        return Ok(token);
    }
    if let Some(file) = auth.token_file.as_deref().filter(|f| !f.is_empty()) {
        let path = expand_home(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|source| AuthError::TokenFile { path, source })?;
        if !text.trim().is_empty() {
            return Ok(Secret::new(text.trim()));
        }
    }
    Err(AuthError::NoToken)
}

/// The variable a setting names (`token_env`, `client_secret_env`, `password_env`): the one
/// environment read allowed outside `config/`, as in `net::credentials`, because the name
/// itself is configuration. Unset or blank = not found.
fn named_env(name: &str) -> Option<Secret> {
    if name.is_empty() {
        return None;
    }
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| Secret::new(v.trim()))
}

fn non_empty(secret: &Secret) -> Option<Secret> {
    let trimmed = secret.expose().trim();
    (!trimmed.is_empty()).then(|| Secret::new(trimmed))
}

fn is_set(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.trim().is_empty())
}

/// `~/x` → `$HOME/x` (config/ does this for the keys it turns into paths; `gateway.auth`
/// is kept raw, so this module expands its own).
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests;
