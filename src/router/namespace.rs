//! Namespace routing (`gateway_pool.namespace_routing.rules`): which endpoint lanes may
//! carry a request, by tag. The first rule (in priority order) whose regex matches the
//! request's tool name (for `tools/call`) or else its method decides; `$N` in a rule's
//! tags is replaced by the text of the pattern's group N. A request no rule matches may
//! go to any lane.
//!
//! Decides tags only, under the core's lock; which lane then takes the request is
//! `dispatch`'s. Reads no more of a message than the tool name, and only when rules are
//! configured.

use std::sync::Arc;

use regex::Regex;

use super::{Core, UpstreamId};
use crate::wire::Message;

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub pattern: Regex,
    pub tags: Vec<String>,
}

impl Core {
    /// The namespace-routing rules of `up`, in the order they are tried.
    pub fn set_namespace_rules(&self, up: UpstreamId, rules: Vec<Rule>) {
        let mut st = self.lock();
        if let Some(u) = st.upstreams.get_mut(up.0 as usize) {
            u.rules = (!rules.is_empty()).then(|| Arc::from(rules));
        }
    }
}

/// The tags `msg` must go to under `rules`, or `None` when no rule matches.
pub(super) fn tags_for(rules: &[Rule], msg: &Message) -> Option<Arc<[Box<str>]>> {
    let method = msg.method()?;
    let tool = (method == "tools/call").then(|| tool_name(msg)).flatten();
    for rule in rules {
        let caps = tool
            .as_deref()
            .and_then(|t| rule.pattern.captures(t))
            .or_else(|| rule.pattern.captures(method));
        if let Some(caps) = caps {
            return Some(
                rule.tags
                    .iter()
                    .map(|t| expand(t, &caps).into_boxed_str())
                    .collect(),
            );
        }
    }
    None
}

/// `$N` replaced by group N's text (a group that did not take part: empty).
fn expand(tag: &str, caps: &regex::Captures<'_>) -> String {
    let mut out = String::with_capacity(tag.len());
    let mut rest = tag;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let digits = rest[i + 1..].bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            out.push('$');
            rest = &rest[i + 1..];
            continue;
        }
        let n: usize = rest[i + 1..i + 1 + digits].parse().unwrap_or(usize::MAX);
        out.push_str(caps.get(n).map_or("", |m| m.as_str()));
        rest = &rest[i + 1 + digits..];
    }
    out.push_str(rest);
    out
}

fn tool_name(msg: &Message) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Call<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(borrow)]
        name: Option<std::borrow::Cow<'a, str>>,
    }
    let call: Call = serde_json::from_slice(msg.raw()).ok()?;
    call.params?.name.map(|n| n.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> Message {
        Message::parse(bytes::Bytes::from(text.to_owned())).unwrap()
    }

    fn rule(pattern: &str, tags: &[&str]) -> Rule {
        Rule {
            pattern: Regex::new(pattern).unwrap(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn tags(rules: &[Rule], text: &str) -> Option<Vec<String>> {
        tags_for(rules, &msg(text)).map(|t| t.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn the_first_matching_rule_decides_with_groups_substituted() {
        let rules = [
            rule(r"^(\w+)\.search$", &["search-$1", "default"]),
            rule(r"^tools/", &["tools"]),
        ];
        assert_eq!(
            tags(
                &rules,
                r#"{"jsonrpc":"2.0","id":1,"method":"github.search"}"#
            ),
            Some(vec!["search-github".into(), "default".into()])
        );
        assert_eq!(
            tags(&rules, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            Some(vec!["tools".into()])
        );
        assert_eq!(
            tags(&rules, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            None
        );
    }

    #[test]
    fn a_tool_call_is_matched_by_its_tool_name_first() {
        let rules = [rule(r"^(\w+)__", &["$1"]), rule("^tools/call$", &["calls"])];
        let call = |name: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}"}}}}"#
            )
        };
        assert_eq!(tags(&rules, &call("git__log")), Some(vec!["git".into()]));
        assert_eq!(tags(&rules, &call("plain")), Some(vec!["calls".into()]));
    }

    #[test]
    fn dollar_without_digits_and_missing_groups() {
        let rules = [rule(r"^a(b)?(c)", &["$", "x$2y", "$1$9"])];
        assert_eq!(
            tags(&rules, r#"{"jsonrpc":"2.0","id":1,"method":"ac"}"#),
            Some(vec!["$".into(), "xcy".into(), "".into()])
        );
    }
}
