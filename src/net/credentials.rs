//! Credentials for network servers: the bearer token from `auth.token_env` or
//! `auth.token_file`, read once at start. Errors name the variable or file, never the token.

use crate::config::{BearerSource, Secret};

/// The token, if one is configured; an error when the source is configured but empty.
pub fn bearer_token(server: &str, source: &BearerSource) -> Result<Option<Secret>, String> {
    if let Some(var) = &source.token_env {
        return match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
            _ => Err(format!(
                "server '{server}': auth.token_env names {var}, which is not set (export it, or use auth.token_file)"
            )),
        };
    }
    if let Some(path) = &source.token_file {
        return match std::fs::read_to_string(path) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
            Ok(_) => Err(format!(
                "server '{server}': auth.token_file {} is empty",
                path.display()
            )),
            Err(e) => Err(format!(
                "server '{server}': auth.token_file {} cannot be read: {e}",
                path.display()
            )),
        };
    }
    Ok(None)
}
