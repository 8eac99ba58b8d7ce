//! Resource URIs when several servers are aggregated: a URI only one server lists is
//! shown as is; a URI two servers both list is shown, for each, in a reversible form
//! naming the server (`mcp-router://<prefix>/<uri>`, the original appended verbatim), so
//! `resources/read` reaches the right one with the original URI. Also the RFC 6570 level-1
//! match that routes a URI made from a server's template to that server. Pure.

const SCHEME: &str = "mcp-router://";

/// The form of `uri` shown for server `prefix` when another server lists the same URI.
pub fn disambiguate(prefix: &str, uri: &str) -> String {
    format!("{SCHEME}{prefix}/{uri}")
}

/// The inverse of [`disambiguate`]: `(prefix, original uri)`.
pub fn restore(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix(SCHEME)?;
    let (prefix, original) = rest.split_once('/')?;
    (!prefix.is_empty()).then_some((prefix, original))
}

/// Whether `uri` could have been made from `template` (literal text with `{var}`,
/// `{+var}`, `{#var}` expressions, each matching a non-empty run of characters; literals
/// compared exactly). Backtracking is bounded by the template's expression count.
pub fn matches_template(template: &str, uri: &str) -> bool {
    let mut parts: Vec<Part> = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        if open > 0 {
            parts.push(Part::Lit(&rest[..open]));
        }
        parts.push(Part::Var);
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest));
    }
    if !parts.iter().any(|p| matches!(p, Part::Var)) {
        return template == uri;
    }
    matches(&parts, uri)
}

#[derive(Debug, Clone, Copy)]
enum Part<'a> {
    Lit(&'a str),
    Var,
}

fn matches(parts: &[Part], s: &str) -> bool {
    match parts.split_first() {
        None => s.is_empty(),
        Some((Part::Lit(l), rest)) => s.strip_prefix(l).is_some_and(|t| matches(rest, t)),
        Some((Part::Var, rest)) => {
            // A variable takes at least one character; the next literal decides where it
            // ends (each candidate end tried once).
            match rest.first() {
                None => !s.is_empty(),
                Some(Part::Var) => s
                    .char_indices()
                    .skip(1)
                    .any(|(i, _)| matches(rest, &s[i..])),
                Some(Part::Lit(l)) => s
                    .match_indices(l)
                    .filter(|(i, _)| *i > 0)
                    .any(|(i, _)| matches(rest, &s[i..])),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TWO_VARS: &str = "r://{first}/x/{second}";

    #[test]
    fn a_shared_uri_is_shown_per_server_and_restored() {
        let shown = disambiguate("files", "file:///etc/hosts");
        assert_eq!(shown, "mcp-router://files/file:///etc/hosts");
        assert_eq!(restore(&shown), Some(("files", "file:///etc/hosts")));
        assert_eq!(restore("file:///etc/hosts"), None);
        assert_eq!(restore("mcp-router:///x"), None);
    }

    #[test]
    fn templates_match_what_they_can_make() {
        assert!(matches_template(
            "demo://greeting/{who}",
            "demo://greeting/router"
        ));
        assert!(!matches_template(
            "demo://greeting/{who}",
            "demo://greeting/"
        ));
        assert!(!matches_template("demo://greeting/{who}", "demo://other/x"));
        assert!(matches_template(
            "db://{table}/rows/{id}",
            "db://users/rows/7"
        ));
        assert!(!matches_template(
            "db://{table}/rows/{id}",
            "db://users/cols/7"
        ));
        assert!(matches_template("file://{+path}", "file://a/b/c"));
        assert!(matches_template("x://fixed", "x://fixed"));
        assert!(!matches_template("x://fixed", "x://fixed2"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        #[test]
        fn restore_inverts_disambiguate(p in "[A-Za-z0-9_-]{1,32}", u in ".*") {
            let shown = disambiguate(&p, &u);
            prop_assert_eq!(restore(&shown), Some((p.as_str(), u.as_str())));
        }

        #[test]
        fn a_template_matches_its_own_expansion(a in "[a-z]{1,8}", b in "[0-9]{1,4}") {
            let uri = format!("r://{a}/x/{b}");
            let matched = matches_template(TWO_VARS, &uri);
            prop_assert!(matched);
        }

        #[test]
        fn matching_never_panics(t in ".{0,40}", u in ".{0,40}") {
            let _ = matches_template(&t, &u);
        }
    }
}
