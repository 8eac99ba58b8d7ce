//! Which of a server's tools, prompts or resources the client sees (`servers[].tools`,
//! `.prompts`, `.resources`: `{allow: [globs], deny: [globs]}`). Glob matching only:
//! `*` any run, `?` one character, everything else literal; whole string, case-sensitive.

use serde::Serialize;

/// Allow and deny globs; empty `allow` allows everything, `deny` wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ItemFilter {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl ItemFilter {
    pub fn allows(&self, name: &str) -> bool {
        let allowed = self.allow.is_empty() || self.allow.iter().any(|g| glob(g, name));
        allowed && !self.deny.iter().any(|g| glob(g, name))
    }

    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// Iterative wildcard match (the classic two-pointer form: linear in practice, no
/// recursion, so a hostile pattern cannot blow the stack).
fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || (p[i] != '*' && p[i] == n[j])) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob("*", "anything"));
        assert!(glob("get_*", "get_sum"));
        assert!(!glob("get_*", "xget_sum"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "abbc"));
        assert!(glob("*sum*", "get-sum-x"));
        assert!(!glob("Echo", "echo"));
        assert!(glob("", ""));
        assert!(!glob("", "x"));
    }

    #[test]
    fn deny_wins_and_empty_allow_allows_all() {
        let f = ItemFilter {
            allow: vec![],
            deny: vec!["secret*".into()],
        };
        assert!(f.allows("echo"));
        assert!(!f.allows("secret_key"));
        let f = ItemFilter {
            allow: vec!["get_*".into(), "echo".into()],
            deny: vec!["get_secret".into()],
        };
        assert!(f.allows("echo"));
        assert!(f.allows("get_sum"));
        assert!(!f.allows("get_secret"));
        assert!(!f.allows("add"));
    }
}
