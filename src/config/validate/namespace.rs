//! `gateway_pool.namespace_routing`, raw → validated: each rule's pattern compiled once
//! (a bad one reported with its key path and the reason in one line), its tags checked
//! (at least one, none empty, every `$N` a group of the pattern), the rules put in the
//! order they are tried: `priority` ascending, ties in file order.

use regex::Regex;

use super::resilience::switched_on;
use super::Problems;
use crate::config::raw::{RawNamespaceRouting, RawNamespaceRule};
use crate::config::{NamespaceRouting, NamespaceRule};

const AT: &str = "gateway_pool.namespace_routing";

/// `None` unless `enabled: true`; the rules are checked either way.
pub fn routing(n: &RawNamespaceRouting, p: &mut Problems) -> Option<NamespaceRouting> {
    let mut rules: Vec<NamespaceRule> = n
        .rules
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, r)| rule(r, &format!("{AT}.rules[{i}]"), p))
        .collect();
    // Stable: rules of equal priority keep the order they are written in.
    rules.sort_by_key(|r| r.priority);
    let given = n.rules.as_ref().is_some_and(|r| !r.is_empty());
    if !switched_on(n.enabled, given, AT, "namespace routing", p) {
        return None;
    }
    if !given {
        p.warnings.push(format!(
            "{AT}: enabled with no rules, so no method is routed by namespace (add rules, each a pattern and the endpoint tags its methods go to)"
        ));
    }
    Some(NamespaceRouting { rules })
}

fn rule(r: &RawNamespaceRule, at: &str, p: &mut Problems) -> Option<NamespaceRule> {
    let pattern = match r.pattern.as_deref() {
        None => {
            p.err(
                &format!("{at}.pattern"),
                "is missing (a regular expression matched against the method name, e.g. ^github\\.)",
            );
            None
        }
        Some(text) => match Regex::new(text) {
            Ok(re) => Some(re),
            Err(e) => {
                p.err(
                    &format!("{at}.pattern"),
                    format!("'{text}' is not a valid regular expression: {}", reason(&e)),
                );
                None
            }
        },
    };
    let tags = r.tags.clone().unwrap_or_default();
    if tags.is_empty() {
        p.err(
            &format!("{at}.tags"),
            "is missing (the endpoint tags the matching methods go to, e.g. [github])",
        );
    }
    for (j, tag) in tags.iter().enumerate() {
        let key = format!("{at}.tags[{j}]");
        if tag.trim().is_empty() {
            p.err(&key, "is empty (a tag names a group of endpoints)");
        }
        if let Some(re) = &pattern {
            check_groups(tag, re, &key, p);
        }
    }
    Some(NamespaceRule {
        pattern: pattern?,
        tags,
        priority: r.priority.unwrap_or(0),
        description: r.description.clone(),
    })
}

/// Every `$N` in `tag` names a capture group of `re` (groups count from 1).
fn check_groups(tag: &str, re: &Regex, at: &str, p: &mut Problems) {
    let groups = re.captures_len() - 1;
    for n in group_refs(tag) {
        if n == 0 {
            p.err(
                at,
                format!("'{tag}' uses group 0, but groups count from 1 ($1 is the first)"),
            );
        } else if n > groups {
            let has = match groups {
                0 => "the pattern has no group (put the part to use in parentheses)".to_owned(),
                1 => "the pattern has 1 group".to_owned(),
                g => format!("the pattern has {g} groups"),
            };
            let n = if n == usize::MAX {
                "a group that large".to_owned()
            } else {
                format!("group {n}")
            };
            p.err(at, format!("'{tag}' uses {n}, but {has}"));
        }
    }
}

/// The group numbers `$N` refers to in `tag`: the longest run of digits after each `$`.
fn group_refs(tag: &str) -> impl Iterator<Item = usize> + '_ {
    tag.match_indices('$').filter_map(|(i, _)| {
        let rest = &tag[i + 1..];
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .map_or(rest, |end| &rest[..end]);
        (!digits.is_empty()).then(|| digits.parse().unwrap_or(usize::MAX))
    })
}

/// The `regex` crate's reason in one line (its message spans several, with a caret under
/// the pattern).
fn reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(
            || text.split_whitespace().collect::<Vec<_>>().join(" "),
            str::to_owned,
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_references_are_read_like_the_expansion_does() {
        assert_eq!(group_refs("$1-$2x").collect::<Vec<_>>(), [1, 2]);
        assert_eq!(group_refs("a$$b").count(), 0);
        assert_eq!(group_refs("$12").collect::<Vec<_>>(), [12]);
        assert_eq!(
            group_refs("$99999999999999999999999").collect::<Vec<_>>(),
            [usize::MAX]
        );
        assert_eq!(group_refs("plain").count(), 0);
    }

    #[test]
    fn a_regex_error_is_one_line() {
        // Built at run time: clippy rejects an invalid regex literal.
        let unclosed = ["^(", "foo"].concat();
        let e = Regex::new(&unclosed).unwrap_err();
        let r = reason(&e);
        assert!(!r.contains('\n') && r.contains("unclosed group"), "{r}");
    }
}
