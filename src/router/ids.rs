//! The one namespace of router-owned request ids: replayed handshakes, re-initializations
//! and ids rewritten where two origins would collide. Every such id is a JSON string
//! `"mcp-router-<what>-<n>"` with `n` unique in the process, so it can never be mistaken
//! for another (clients and servers number their own requests; none uses this prefix).
//! No I/O; the counter is the only state.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::Id;

/// Hands out router-owned ids.
#[derive(Debug, Default)]
pub struct Ids {
    next: AtomicU64,
}

impl Ids {
    /// A fresh id; `what` says what it is for (`replay`, `reinit`, `s2c` …), for logs.
    pub fn fresh(&self, what: &str) -> Id {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Id::router_owned(&format!("mcp-router-{what}-{n}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_strings_with_the_prefix() {
        let ids = Ids::default();
        let a = ids.fresh("replay");
        let b = ids.fresh("replay");
        assert_ne!(a, b);
        assert_eq!(a.as_json(), "\"mcp-router-replay-0\"");
        assert!(b.as_json().starts_with("\"mcp-router-"));
    }
}
