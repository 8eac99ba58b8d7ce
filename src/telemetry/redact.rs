//! Secrets out of URLs before a URL reaches a log line, an error text, or the client.
//!
//! API keys ride in query strings (`?api_key=…`) and in userinfo
//! (`https://user:token@host/…`) often enough that no URL we print may carry either:
//! [`url`] keeps `scheme://host[:port]/path` and nothing else, [`masked`] keeps the shape
//! (`***` where a secret may be) for `config check`, and [`reqwest_error`] /
//! [`sse_error`] drop the URL that reqwest writes into its error texts. Input that does not
//! parse is never echoed raw: at most its scheme and a plainly harmless host survive.

use std::fmt::Write as _;

use eventsource_stream::EventStreamError;

/// `u` as `scheme://host[:port]/path`: no userinfo, no query, no fragment. A default port
/// is left out, as the URL parser normalizes it.
pub fn url(u: &str) -> String {
    shape(u, false)
}

/// `u` with its userinfo, query and fragment replaced by `***`, so a reader of
/// `config check` sees that they are set without seeing them.
pub fn masked(u: &str) -> String {
    shape(u, true)
}

fn shape(u: &str, mask: bool) -> String {
    let Ok(parsed) = reqwest::Url::parse(u) else {
        return salvage(u);
    };
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
        // `mailto:user@host`, `data:…`: everything after the scheme may be the secret.
        return format!("{}:(no host)", parsed.scheme());
    };
    let mut out = format!("{}://", parsed.scheme());
    if mask && (!parsed.username().is_empty() || parsed.password().is_some()) {
        out.push_str("***@");
    }
    out.push_str(host);
    if let Some(port) = parsed.port() {
        let _ = write!(out, ":{port}");
    }
    out.push_str(parsed.path());
    if mask && parsed.query().is_some() {
        out.push_str("?***");
    }
    if mask && parsed.fragment().is_some() {
        out.push_str("#***");
    }
    out
}

/// For input the URL parser refuses: its scheme and host when both are plainly that (so
/// an error can still say which server), else a placeholder. Any `@` means a userinfo may
/// be mixed into what looks like the host (`http://user:pa/ss@host` splits the password
/// at the `/`), so then nothing of the authority is kept.
fn salvage(u: &str) -> String {
    const PLACEHOLDER: &str = "(an unparsable URL)";
    let Some((scheme, rest)) = u.split_once("://") else {
        return PLACEHOLDER.to_owned();
    };
    let scheme_ok = !scheme.is_empty()
        && scheme.len() <= 16
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return PLACEHOLDER.to_owned();
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, ""));
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
    let port_ok = port.len() <= 10 && port.chars().all(|c| c.is_ascii_digit());
    if u.contains('@') || !host_ok || !port_ok {
        return format!("{scheme}://{PLACEHOLDER}");
    }
    format!("{scheme}://{authority} {PLACEHOLDER}")
}

/// A reqwest error with its source chain ("connection refused" and the like live there),
/// without the URL reqwest puts into its own text.
pub fn reqwest_error(e: reqwest::Error) -> String {
    chain(&e.without_url())
}

/// An SSE stream error, its transport part without the URL.
pub fn sse_error(e: EventStreamError<reqwest::Error>) -> String {
    match e {
        EventStreamError::Transport(e) => reqwest_error(e),
        other => other.to_string(),
    }
}

/// An error with its sources (`reqwest` and `tungstenite` keep the useful part, such as
/// "connection refused" or "certificate unknown", in the source chain). The caller makes
/// sure no URL is in it (reqwest: [`reqwest_error`]).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn userinfo_query_and_fragment_are_dropped() {
        assert_eq!(
            url("https://user:hunter2@api.example.com:8443/v1/mcp?api_key=SECRET#frag"),
            "https://api.example.com:8443/v1/mcp"
        );
        assert_eq!(
            url("http://127.0.0.1:3001/mcp"),
            "http://127.0.0.1:3001/mcp"
        );
        assert_eq!(url("https://example.com:443/"), "https://example.com/");
        assert_eq!(url("wss://tok@[::1]:9/ws?t=1"), "wss://[::1]:9/ws");
        assert_eq!(url("tcp://u:p@gw.internal:7000"), "tcp://gw.internal:7000");
    }

    #[test]
    fn masking_keeps_the_shape() {
        assert_eq!(
            masked("https://user:hunter2@api.example.com/mcp?api_key=SECRET#x"),
            "https://***@api.example.com/mcp?***#***"
        );
        assert_eq!(masked("http://h:1/p"), "http://h:1/p");
    }

    #[test]
    fn unparsable_input_is_never_echoed() {
        // The password holds a `/`, so a naive split would print part of it as the host.
        assert_eq!(url("http://user:pa/ss@host/"), "http://(an unparsable URL)");
        assert_eq!(
            url("http://host:99999/mcp?api_key=SECRET"),
            "http://host:99999 (an unparsable URL)"
        );
        assert_eq!(url("not a url ?api_key=SECRET"), "(an unparsable URL)");
        assert_eq!(
            url("http://exa mple.com/?k=SECRET"),
            "http://(an unparsable URL)"
        );
        assert_eq!(url("mailto:someone@example.com"), "mailto:(no host)");
    }

    #[tokio::test]
    async fn reqwest_errors_lose_their_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let e = reqwest::Client::new()
            .get(format!(
                "http://user:PWSECRET@127.0.0.1:{port}/mcp?api_key=QSECRET"
            ))
            .send()
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("QSECRET"),
            "reqwest now omits URLs: {e}"
        );
        let text = reqwest_error(e);
        assert!(
            !text.contains("SECRET") && !text.contains("api_key"),
            "{text}"
        );
        assert!(text.contains("error sending request"), "{text}");
    }

    /// A part of a URL that must not survive: a marker made of letters that occur in no
    /// generated host, path or percent-escape (uppercase `G`–`Z`), then characters that are
    /// legal at that place (so the part stays what it is, e.g. a password with no `/`).
    fn secret(marker: &'static str, rest: &'static str) -> impl Strategy<Value = String> {
        rest.prop_map(move |s| format!("{marker}{s}"))
    }

    proptest! {
        #[test]
        fn random_input_never_panics_nor_keeps_a_query_or_userinfo(s in prop_oneof!["\\PC{0,80}", "[a-z+.-]{1,6}://[ -~]{0,60}"]) {
            let plain = url(&s);
            let shaped = masked(&s).replace("?***", "").replace("#***", "").replace("***@", "");
            for out in [&plain, &shaped] {
                prop_assert!(!out.contains('?') && !out.contains('#'), "{s:?} -> {out}");
                let authority = out.split_once("://").map_or("", |(_, r)| r.split('/').next().unwrap_or(""));
                prop_assert!(!authority.contains('@'), "{s:?} -> {out}");
            }
        }

        #[test]
        fn secrets_in_a_url_never_survive(
            scheme in prop::sample::select(vec!["http", "https", "ws", "wss", "tcp"]),
            user in secret("USRX", "[A-Za-z0-9._~!$&'()*+,;=%-]{0,12}"),
            pass in secret("PWXY", "[A-Za-z0-9._~!$&'()*+,;=:%-]{0,12}"),
            host in "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5})?",
            port in prop::option::of(1u16..),
            path in "(/[a-z0-9._~-]{0,8}){0,3}",
            query in secret("QRYZ", "[ -\"$-~]{0,12}"),
            fragment in secret("FRGW", "[ -~]{0,12}"),
        ) {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let input = format!("{scheme}://{user}:{pass}@{host}{port}{path}?{query}#{fragment}");
            for out in [url(&input), masked(&input)] {
                for marker in ["USRX", "PWXY", "QRYZ", "FRGW"] {
                    prop_assert!(!out.contains(marker), "{input} -> {out}");
                }
            }
            let plain = url(&input);
            if let Ok(back) = reqwest::Url::parse(&plain) {
                prop_assert!(back.username().is_empty() && back.password().is_none());
                prop_assert!(back.query().is_none() && back.fragment().is_none());
            }
        }
    }
}
