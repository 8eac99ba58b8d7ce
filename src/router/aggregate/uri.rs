//! Resource URIs across several servers: a URI only one server lists is shown as is; a
//! URI two servers both list is shown, for each of them, in a reversible form that names
//! the server, so a `resources/read` of it goes back to the right one. Templated URIs
//! (`resources/templates/list`) are routed by matching the URI against each server's
//! templates.
//!
//! The reversible form is `mcp-router://<prefix>/<uri>` with the original URI appended
//! verbatim; `restore` splits at the first `/` after the scheme, so it round-trips for
//! every prefix without `/` (prefixes are names like `github`, `fs-2`). A server that
//! itself lists `mcp-router://…` URIs would be misread; none is expected to.
//!
//! Templates: RFC 6570 level 1 (`{var}`) plus `{+var}` and `{#var}`; other operators
//! (`{/var}`, `{?q}`, `{x,y}`, …) are beyond what is needed here and such a template
//! matches nothing. Deliberately not here: deciding which URIs collide (the caller sees
//! every list), percent-decoding, I/O.

/// The scheme and authority marker of a disambiguated URI.
const SCHEME: &str = "mcp-router://";

/// The form of `uri` shown for server `prefix` when another server lists the same URI:
/// `"mcp-router://<prefix>/<uri>"` (uri appended verbatim).
pub fn disambiguate(prefix: &str, uri: &str) -> String {
    format!("{SCHEME}{prefix}/{uri}")
}

/// The inverse: `Some((prefix, original uri))` for a URI of that form (a non-empty prefix
/// up to the first `/`), else `None`.
pub fn restore(uri: &str) -> Option<(&str, &str)> {
    let (prefix, original) = uri.strip_prefix(SCHEME)?.split_once('/')?;
    (!prefix.is_empty()).then_some((prefix, original))
}

/// Whether `uri` could have been produced by URI template `template`: literal text
/// compared exactly, and each `{var}` or `{+var}` matching any non-empty run of
/// characters; `{#var}` is its RFC 6570 expansion, a literal `#` then a non-empty run. A
/// malformed template (an unclosed `{`, a stray `}`, an empty expression) or one with an
/// operator or a variable list beyond these matches nothing.
pub fn matches_template(template: &str, uri: &str) -> bool {
    let Some(parts) = parse(template) else {
        return false;
    };
    // Positions of `uri` (byte offsets, always on char boundaries) reachable after
    // matching the parts so far: linear in parts × URI length, whatever the template.
    let n = uri.len();
    let mut reach = vec![false; n + 1];
    reach[0] = true;
    for part in &parts {
        let mut next = vec![false; n + 1];
        match part {
            Part::Literal(lit) => {
                for p in (0..=n).filter(|&p| reach[p]) {
                    if uri.as_bytes()[p..].starts_with(lit.as_bytes()) {
                        next[p + lit.len()] = true;
                    }
                }
            }
            Part::Var => {
                // Any end after a reachable start, at least one character on.
                let mut started = false;
                for (p, slot) in next.iter_mut().enumerate() {
                    if started && uri.is_char_boundary(p) {
                        *slot = true;
                    }
                    started |= reach[p];
                }
            }
        }
        if !next.contains(&true) {
            return false;
        }
        reach = next;
    }
    reach[n]
}

#[derive(Debug, PartialEq)]
enum Part<'a> {
    Literal(&'a str),
    /// Any non-empty run of characters.
    Var,
}

/// The template as literals and variables; `None` if it is not one this understands.
fn parse(template: &str) -> Option<Vec<Part<'_>>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        if rest.as_bytes()[i] == b'}' {
            return None;
        }
        if i > 0 {
            parts.push(Part::Literal(&rest[..i]));
        }
        let after = &rest[i + 1..];
        let end = after.find('}')?;
        let body = &after[..end];
        let name = match body.as_bytes().first() {
            Some(b'+') => &body[1..],
            Some(b'#') => {
                parts.push(Part::Literal("#"));
                &body[1..]
            }
            _ => body,
        };
        let operator = |c: char| "/.;?&=,!@|+#".contains(c);
        if name.is_empty() || name.starts_with(operator) || name.contains([',', '{']) {
            return None;
        }
        parts.push(Part::Var);
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest));
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn disambiguate_and_restore() {
        assert_eq!(
            disambiguate("fs", "file:///etc/hosts"),
            "mcp-router://fs/file:///etc/hosts"
        );
        assert_eq!(
            restore("mcp-router://fs/file:///etc/hosts"),
            Some(("fs", "file:///etc/hosts"))
        );
        assert_eq!(disambiguate("gh-2", ""), "mcp-router://gh-2/");
        assert_eq!(restore("mcp-router://gh-2/"), Some(("gh-2", "")));
        assert_eq!(
            restore("mcp-router://a/mcp-router://b/x"),
            Some(("a", "mcp-router://b/x"))
        );
        for not_ours in [
            "file:///etc/hosts",
            "mcp-router://",
            "mcp-router://fs",
            "mcp-router:///x",
            "MCP-ROUTER://fs/x",
            " mcp-router://fs/x",
            "",
        ] {
            assert_eq!(restore(not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn parse_splits_literals_and_vars() {
        use Part::{Literal as L, Var as V};
        assert_eq!(
            parse("users://{id}/profile"),
            Some(vec![L("users://"), V, L("/profile")])
        );
        assert_eq!(parse("{a}{+b}x{#c}"), Some(vec![V, V, L("x"), L("#"), V]));
        assert_eq!(parse(""), Some(vec![]));
        for bad in [
            "{", "}", "a{b", "a}b", "{}", "{+}", "{#}", "{/p}", "{?q}", "{x,y}", "{a{b}", "{++a}",
            "{.x}",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn templates_match_exactly() {
        let t = "users://{id}/profile";
        assert!(matches_template(t, "users://42/profile"));
        assert!(matches_template(t, "users://a/b/profile"));
        assert!(!matches_template(t, "users:///profile"));
        assert!(!matches_template(t, "users://42/profile/"));
        assert!(!matches_template(t, "Users://42/profile"));
        assert!(!matches_template(t, "users://42"));
        assert!(matches_template("file:///{+path}", "file:///etc/hosts"));
        assert!(!matches_template("file:///{+path}", "file:///"));
        assert!(matches_template("doc://{id}{#frag}", "doc://7#intro"));
        assert!(!matches_template("doc://{id}{#frag}", "doc://7"));
        assert!(!matches_template("doc://{id}{#frag}", "doc://7#"));
        // Adjacent variables need a character each, counted in characters.
        assert!(matches_template("{a}{b}", "xy"));
        assert!(!matches_template("{a}{b}", "x"));
        assert!(!matches_template("{a}{b}", "é"));
        assert!(matches_template("{a}{b}", "éü"));
        assert!(matches_template("x{a}é", "xüé"));
        // No expressions: plain equality.
        assert!(matches_template("config://app", "config://app"));
        assert!(!matches_template("config://app", "config://ap"));
        assert!(matches_template("", ""));
        assert!(!matches_template("", "x"));
        // A template this does not understand matches nothing.
        assert!(!matches_template("search://{?q}", "search://?q=x"));
        assert!(!matches_template("x{", "x{"));
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 1024,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn restore_inverts_disambiguate(prefix in "[A-Za-z0-9_-]{1,32}", uri in any::<String>()) {
            let shown = disambiguate(&prefix, &uri);
            prop_assert_eq!(restore(&shown), Some((prefix.as_str(), uri.as_str())));
        }

        #[test]
        fn restore_ignores_other_uris(uri in any::<String>()) {
            prop_assume!(!uri.starts_with(SCHEME));
            prop_assert_eq!(restore(&uri), None);
        }

        #[test]
        fn matches_template_never_panics(t in "[{}+#/a-cé,?]{0,16}", u in "[{}+#/a-cé]{0,16}", t2 in any::<String>(), u2 in any::<String>()) {
            let _ = matches_template(&t, &u);
            let _ = matches_template(&t2, &u2);
            let _ = matches_template(&t, &u2);
        }

        #[test]
        fn an_expansion_matches_its_template(
            pieces in prop::collection::vec(("[a-z:/.é-]{0,4}", prop_oneof![Just(""), Just("+"), Just("#")], "[a-z0-9/#é{}]{1,5}"), 0..4),
            tail in "[a-z:/.é-]{0,4}",
        ) {
            let mut template = String::new();
            let mut uri = String::new();
            for (lit, op, value) in &pieces {
                template.push_str(lit);
                template.push_str(&format!("{{{op}v}}"));
                uri.push_str(lit);
                if *op == "#" {
                    uri.push('#');
                }
                uri.push_str(value);
            }
            template.push_str(&tail);
            uri.push_str(&tail);
            prop_assert!(matches_template(&template, &uri), "{} {}", template, uri);
        }

        #[test]
        fn without_expressions_it_is_equality(t in "[a-c:/é]{0,8}", u in "[a-c:/é]{0,8}") {
            prop_assert_eq!(matches_template(&t, &u), t == u);
        }
    }
}
