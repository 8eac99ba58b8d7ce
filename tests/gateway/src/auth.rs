//! Bearer-token decisions: the static `--token` list plus tokens issued by the OAuth2
//! endpoint, each valid until its expiry.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// What a valid token grants: forever (static) or until an instant (issued).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    Forever,
    Until(Instant),
}

impl Grant {
    /// When a connection authenticated with this grant must be closed, if ever.
    pub fn expiry(self) -> Option<Instant> {
        match self {
            Grant::Forever => None,
            Grant::Until(at) => Some(at),
        }
    }
}

/// The gateway's token store.
#[derive(Debug)]
pub struct Auth {
    enabled: bool,
    static_tokens: HashSet<String>,
    issued: Mutex<HashMap<String, Instant>>,
    /// `--close-on-expiry`.
    pub close_on_expiry: bool,
}

impl Auth {
    /// Auth is on when there is at least one static token or an OAuth2 endpoint.
    pub fn new(tokens: &[String], oauth: bool, close_on_expiry: bool) -> Self {
        Auth {
            enabled: oauth || !tokens.is_empty(),
            static_tokens: tokens.iter().cloned().collect(),
            issued: Mutex::new(HashMap::new()),
            close_on_expiry,
        }
    }

    /// Whether requests must be authenticated at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The grant of `token`, or `None` when it is unknown or expired.
    pub fn check(&self, token: &str) -> Option<Grant> {
        if self.static_tokens.contains(token) {
            return Some(Grant::Forever);
        }
        let issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        match issued.get(token) {
            Some(&until) if Instant::now() < until => Some(Grant::Until(until)),
            _ => None,
        }
    }

    /// Checks an `Authorization` header value: exactly `Bearer <token>`.
    pub fn check_header(&self, header: Option<&str>) -> Option<Grant> {
        self.check(header?.strip_prefix("Bearer ")?)
    }

    /// Issues a fresh random token valid for `ttl`.
    pub fn issue(&self, ttl: Duration) -> String {
        use rand::Rng;
        let bytes: [u8; 24] = rand::thread_rng().gen();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        issued.retain(|_, until| *until > now);
        issued.insert(token.clone(), now + ttl);
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_issued_and_expired_tokens() {
        let auth = Auth::new(&["s3cret".into()], true, false);
        assert!(auth.enabled());
        assert_eq!(
            auth.check_header(Some("Bearer s3cret")),
            Some(Grant::Forever)
        );
        assert_eq!(auth.check_header(Some("bearer s3cret")), None);
        assert_eq!(auth.check_header(None), None);
        let live = auth.issue(Duration::from_secs(60));
        assert!(matches!(auth.check(&live), Some(Grant::Until(_))));
        let dead = auth.issue(Duration::ZERO);
        assert_eq!(auth.check(&dead), None);
        assert!(!Auth::new(&[], false, false).enabled());
    }
}
