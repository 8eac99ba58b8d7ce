//! URLs as they may be shown: `scheme://host:port/path`, never userinfo, query or
//! fragment (API keys live there on hosted servers). Every URL that reaches a log line or
//! an error goes through here, at every level. Pure functions, no I/O.

/// `u` without userinfo, query and fragment. Input that does not parse as a URL is not
/// echoed (it may be a secret pasted in the wrong place).
pub fn url(u: &str) -> String {
    match reqwest::Url::parse(u) {
        Ok(parsed) if parsed.has_host() => {
            let mut out = format!("{}://", parsed.scheme());
            if let Some(host) = parsed.host_str() {
                out.push_str(host);
            }
            if let Some(port) = parsed.port() {
                out.push_str(&format!(":{port}"));
            }
            out.push_str(parsed.path());
            out
        }
        _ => "(a URL that does not parse)".to_owned(),
    }
}

/// `text` (an error message from a library) with `raw` — and any URL-looking part of it
/// carrying userinfo or a query — replaced by its shown form.
pub fn error_text(text: &str, raw: &str) -> String {
    if raw.is_empty() {
        return text.to_owned();
    }
    let shown = url(raw);
    let mut out = text.replace(raw, &shown);
    if let Ok(parsed) = reqwest::Url::parse(raw) {
        // Libraries print the URL re-serialized; catch that form too.
        out = out.replace(parsed.as_str(), &shown);
        if let Some(q) = parsed.query().filter(|q| !q.is_empty()) {
            out = out.replace(q, "…");
        }
        if !parsed.username().is_empty() {
            out = out.replace(parsed.username(), "…");
        }
        if let Some(p) = parsed.password() {
            out = out.replace(p, "…");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_query_and_fragment_are_gone() {
        assert_eq!(
            url("https://user:pa55@example.com:8443/mcp/x?api_key=SECRET#frag"),
            "https://example.com:8443/mcp/x"
        );
        assert_eq!(url("ws://127.0.0.1/"), "ws://127.0.0.1/");
        assert_eq!(url("not a url ?key=SECRET"), "(a URL that does not parse)");
    }

    #[test]
    fn errors_lose_the_secret_parts() {
        let raw = "http://u:pw123@h:1/p?token=SECRET";
        let e = format!(
            "error sending request for url ({}): refused",
            reqwest::Url::parse(raw).unwrap()
        );
        let shown = error_text(&e, raw);
        assert!(
            !shown.contains("SECRET") && !shown.contains("pw123"),
            "{shown}"
        );
        assert!(shown.contains("http://h:1/p"), "{shown}");
    }
}
