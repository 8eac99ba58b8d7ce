//! Which of a server's tools, prompts or resources the router shows: [`ItemFilter`], an
//! allow list and a deny list of glob patterns, and the glob matcher itself.
//!
//! Globs are deliberately small: `*` matches any run of characters (none included), `?`
//! exactly one character, everything else only itself; case-sensitive, whole name. There
//! is no escape and no character class (tool names are `[A-Za-z0-9_.-]` in practice). This
//! file only decides; which name is matched (a tool's, a prompt's, a resource's) and when
//! is the routing core's business.

use serde::Serialize;

/// `allow` and `deny` glob lists for one kind of item of one server. An empty `allow`
/// allows everything; `deny` wins over `allow`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ItemFilter {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl ItemFilter {
    /// Whether an item called `name` is shown to the client.
    pub fn allows(&self, name: &str) -> bool {
        let allowed = self.allow.is_empty() || self.allow.iter().any(|g| glob_match(g, name));
        allowed && !self.deny.iter().any(|g| glob_match(g, name))
    }

    /// Neither list is set: everything is allowed.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// Whether `name` as a whole matches `pattern` (`*`: any run, `?`: one character).
///
/// The classic linear-backtracking matcher: on a mismatch, only the last `*` is retried
/// one character further, so the cost is O(pattern × name) at worst, never exponential.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // The last `*` seen, and the name position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn filter(allow: &[&str], deny: &[&str]) -> ItemFilter {
        ItemFilter {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn globs_match_the_whole_name() {
        for (pattern, name, expected) in [
            ("read_file", "read_file", true),
            ("read_file", "read_files", false),
            ("read_file", "xread_file", false),
            ("read_*", "read_file", true),
            ("read_*", "read_", true),
            ("read_*", "rea", false),
            ("*_file", "write_file", true),
            ("*file*", "a_file_b", true),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("?", "a", true),
            ("?", "", false),
            ("?", "ab", false),
            ("get_?", "get_x", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
            ("Read", "read", false),
            ("*.txt", "notes.txt", true),
            ("[ab]", "[ab]", true),
            ("[ab]", "a", false),
            ("é?", "éx", true),
        ] {
            assert_eq!(glob_match(pattern, name), expected, "{pattern} vs {name}");
        }
    }

    #[test]
    fn empty_allow_allows_everything_and_deny_wins() {
        let everything = ItemFilter::default();
        assert!(everything.allows("anything") && everything.allows(""));
        assert!(everything.is_empty());

        let some = filter(&["read_*", "list_*"], &[]);
        assert!(some.allows("read_file") && some.allows("list_dir"));
        assert!(!some.allows("write_file"));

        let deny_only = filter(&[], &["delete_*"]);
        assert!(deny_only.allows("read_file") && !deny_only.allows("delete_repo"));

        let both = filter(&["*_file"], &["write_file"]);
        assert!(both.allows("read_file") && !both.allows("write_file"));
        assert!(!both.allows("list_dir"));

        assert!(!filter(&["*"], &["*"]).allows("x"));
    }

    #[test]
    fn only_set_lists_are_rendered() {
        let yaml = serde_yaml_ng::to_string(&filter(&["a*"], &[])).unwrap();
        assert_eq!(yaml, "allow:\n- a*\n");
    }

    /// Names without the two special characters.
    fn plain() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.é-]{0,12}"
    }

    proptest! {
        #[test]
        fn a_star_matches_everything(name in ".{0,20}") {
            prop_assert!(glob_match("*", &name));
            prop_assert!(glob_match("**", &name));
        }

        #[test]
        fn a_literal_pattern_matches_only_itself(pattern in plain(), name in plain()) {
            prop_assert!(glob_match(&pattern, &pattern));
            prop_assert_eq!(glob_match(&pattern, &name), pattern == name);
        }

        #[test]
        fn question_marks_and_stars_stand_in_for_what_they_replace(
            name in plain(),
            mask in proptest::collection::vec(0u8..3, 12),
        ) {
            // Each character kept, replaced by `?`, or replaced by `*`: still a match.
            let pattern: String = name
                .chars()
                .zip(mask.iter().cycle())
                .map(|(c, m)| match m { 0 => c, 1 => '?', _ => '*' })
                .collect();
            prop_assert!(glob_match(&pattern, &name), "{} vs {}", pattern, name);
        }

        #[test]
        fn deny_always_wins(name in plain()) {
            let f = ItemFilter { allow: vec![name.clone()], deny: vec![name.clone()] };
            prop_assert!(!f.allows(&name));
        }
    }
}
