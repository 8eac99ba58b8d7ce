//! Protocol auto-detection for `auto_detect: true` servers: which of the `candidates`
//! (command lines, `ws(s)://`, `http(s)://`, `tcp(s)://` URLs) is there, and over which
//! transport.
//!
//! Probes are passive — the router never speaks MCP before the client does — so no
//! candidate sees an `initialize` it did not get from the client, and no client message is
//! ever sent twice: a command is there when its program resolves to an executable file; a
//! WebSocket URL when the upgrade (subprotocol `mcp`) succeeds, then it is closed with
//! 1000; an HTTP URL when a `GET` answers, decided by its status alone (a stateless
//! Streamable HTTP server answers with an SSE stream that stays silent, so waiting on the
//! stream would only cost time): a `…/sse` URL whose stream opens with an `endpoint` event
//! is legacy HTTP+SSE, anything else from a live HTTP server (2xx, 400, 401, 403, 405, 406)
//! is Streamable HTTP, and a legacy server at another path is found by the HTTP upstream
//! itself, which falls back when the server refuses its first POST (the spec's
//! backwards-compatibility rule). A lone `http(s)://` candidate with no gateway to fall
//! back to is not probed at all: that rule tells, with the client's own first message.
//! Each probe is bounded by `auto_detection.timeout` and leaves nothing open. The winner is
//! cached in memory and on disk (user cache dir, keyed by the candidate list, `cache_ttl`);
//! a cached choice is probed again first and, if it no longer answers, every candidate is.
//! URLs are logged and reported without userinfo or query ([`redact::url`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::error_chain;
use crate::config::{StdioCommand, TlsConfig};
use crate::telemetry::redact;

/// What a candidate turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    Stdio(StdioCommand),
    StreamableHttp(String),
    Sse(String),
    WebSocket(String),
    /// The TCP binary framing (`tcp://`, `tcps://`, `tcp+tls://`).
    Tcp(String),
}

impl Detected {
    fn kind(&self) -> &'static str {
        match self {
            Detected::Stdio(_) => "stdio",
            Detected::StreamableHttp(_) => "http",
            Detected::Sse(_) => "sse",
            Detected::WebSocket(_) => "websocket",
            Detected::Tcp(_) => "tcp",
        }
    }
}

/// How detection runs.
pub struct Probe<'a> {
    pub server: &'a str,
    pub candidates: &'a [String],
    pub timeout: Duration,
    pub tls: &'a TlsConfig,
    /// Sent with HTTP and WebSocket probes (a server behind auth answers only with them).
    pub headers: &'a std::collections::BTreeMap<String, String>,
    /// `None`: don't cache.
    pub cache: Option<(PathBuf, Duration)>,
    /// `fallback: gateway`: with a gateway to fall back to, even a lone URL is probed
    /// (nothing else could tell that the gateway is needed).
    pub fallback_gateway: bool,
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    candidates: Vec<String>,
    index: usize,
    kind: String,
    at_unix_s: u64,
}

/// The user's cache file for detection results.
pub fn default_cache_file() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("mcp-router").join("detect.json"))
}

/// A candidate as logs and errors show it: a URL without userinfo or query.
fn shown(candidate: &str) -> String {
    if candidate.contains("://") {
        redact::url(candidate)
    } else {
        candidate.to_owned()
    }
}

/// Finds the first candidate that answers; the error says why each one did not.
pub async fn detect(p: &Probe<'_>) -> Result<Detected, String> {
    if let ([only], false) = (p.candidates, p.fallback_gateway) {
        if let Some("http" | "https") = only.split_once("://").map(|(s, _)| s) {
            let found = if super::is_legacy_sse(only) {
                Detected::Sse(only.clone())
            } else {
                Detected::StreamableHttp(only.clone())
            };
            tracing::info!(upstream = %p.server, candidate = %shown(only), kind = found.kind(), "auto-detection: a lone URL is not probed; the server's answer to the first message tells Streamable HTTP from legacy SSE");
            return Ok(found);
        }
    }
    if let Some(index) = cached_choice(p) {
        let candidate = shown(&p.candidates[index]);
        if let Ok(found) = probe(p, &p.candidates[index]).await {
            tracing::info!(upstream = %p.server, %candidate, kind = found.kind(), "auto-detection: cached choice still answers");
            return Ok(found);
        }
        tracing::info!(upstream = %p.server, %candidate, "auto-detection: cached choice no longer answers; probing every candidate");
    }
    let mut failures = Vec::new();
    for (index, raw) in p.candidates.iter().enumerate() {
        let candidate = shown(raw);
        match probe(p, raw).await {
            Ok(found) => {
                tracing::info!(upstream = %p.server, %candidate, kind = found.kind(), "auto-detection picked this candidate");
                store_choice(p, index, found.kind());
                return Ok(found);
            }
            Err(why) => {
                tracing::info!(upstream = %p.server, %candidate, "auto-detection: {why}");
                failures.push(format!("{candidate}: {why}"));
            }
        }
    }
    Err(format!("no candidate answered ({})", failures.join("; ")))
}

async fn probe(p: &Probe<'_>, candidate: &str) -> Result<Detected, String> {
    let scheme = candidate.split_once("://").map(|(s, _)| s);
    let attempt = async {
        match scheme {
            Some("ws" | "wss") => probe_ws(candidate, p).await,
            Some("http" | "https") => probe_http(candidate, p).await,
            Some("tcp" | "tcps" | "tcp+tls") => probe_tcp(candidate, p).await,
            Some(other) if !other.contains(' ') => Err(format!("unknown scheme '{other}'")),
            _ => probe_command(candidate),
        }
    };
    tokio::time::timeout(p.timeout, attempt)
        .await
        .map_err(|_| format!("no answer within {:?}", p.timeout))?
}

fn probe_command(line: &str) -> Result<Detected, String> {
    let words = shell_words::split(line).map_err(|e| format!("not a command line: {e}"))?;
    let (program, args) = words.split_first().ok_or("empty command")?;
    resolve_program(program)
        .ok_or_else(|| format!("'{program}' is not an executable file or on PATH"))?;
    Ok(Detected::Stdio(StdioCommand {
        program: program.clone(),
        args: args.to_vec(),
        ..StdioCommand::default()
    }))
}

fn resolve_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| executable(p))
    })
}

async fn probe_ws(url: &str, p: &Probe<'_>) -> Result<Detected, String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "sec-websocket-protocol",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_static("mcp"),
    );
    for (k, v) in super::header_map(p.server, p.headers) {
        if let Some(k) = k {
            req.headers_mut().insert(k, v);
        }
    }
    let config = crate::net::tls::client_config(p.tls, &[])?;
    let (mut socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        req,
        None,
        true,
        Some(tokio_tungstenite::Connector::Rustls(config)),
    )
    .await
    .map_err(|e| error_chain(&e))?;
    let _ = socket.close(None).await;
    Ok(Detected::WebSocket(url.to_owned()))
}

/// A TCP connection (and the TLS handshake, for `tcps`) that succeeds; nothing is sent.
async fn probe_tcp(url: &str, p: &Probe<'_>) -> Result<Detected, String> {
    // The parser's errors quote the URL.
    let ep = super::gateway::endpoints::Endpoint::parse(url)
        .map_err(|e| e.replace(url, &redact::url(url)))?;
    let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    if ep.tls {
        let config = crate::net::tls::client_config(p.tls, &[])?;
        let name = rustls::pki_types::ServerName::try_from(ep.host.clone())
            .map_err(|_| format!("'{}' is not a valid TLS server name", ep.host))?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {}", error_chain(&e)))?;
    }
    Ok(Detected::Tcp(url.to_owned()))
}

async fn probe_http(url: &str, p: &Probe<'_>) -> Result<Detected, String> {
    let client = super::http_client(Duration::from_secs(30), p.tls)?;
    let resp = client
        .get(url)
        .headers(super::header_map(p.server, p.headers))
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(redact::reqwest_error)?;
    let status = resp.status();
    let is_sse = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if status.is_success() && is_sse && super::is_legacy_sse(url) {
        // A legacy server opens with `endpoint` at once; the probe's timeout bounds this.
        let mut events = eventsource_stream::Eventsource::eventsource(resp.bytes_stream());
        return match events.next().await {
            Some(Ok(e)) if e.event == "endpoint" => Ok(Detected::Sse(url.to_owned())),
            _ => Ok(Detected::StreamableHttp(url.to_owned())),
        };
    }
    // Decided here, without reading the stream (see the module doc).
    match status.as_u16() {
        // What Streamable HTTP servers answer a GET without a session.
        200..=299 | 400 | 401 | 403 | 405 | 406 => Ok(Detected::StreamableHttp(url.to_owned())),
        _ => Err(format!("HTTP {status}, not an MCP endpoint")),
    }
}

fn cached_choice(p: &Probe<'_>) -> Option<usize> {
    let (file, ttl) = p.cache.as_ref()?;
    let text = std::fs::read_to_string(file).ok()?;
    let entries: Vec<CacheEntry> = serde_json::from_str(&text).ok()?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs();
    entries
        .iter()
        .find(|e| e.candidates == p.candidates && now.saturating_sub(e.at_unix_s) <= ttl.as_secs())
        .map(|e| e.index)
        .filter(|i| *i < p.candidates.len())
}

fn store_choice(p: &Probe<'_>, index: usize, kind: &str) {
    let Some((file, _)) = &p.cache else { return };
    let mut entries: Vec<CacheEntry> = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    entries.retain(|e| e.candidates != p.candidates);
    entries.push(CacheEntry {
        candidates: p.candidates.to_vec(),
        index,
        kind: kind.to_owned(),
        at_unix_s: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    });
    let write = || -> std::io::Result<()> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&entries).unwrap_or_default(),
        )?;
        std::fs::rename(&tmp, file)
    };
    if let Err(e) = write() {
        tracing::debug!(
            "cannot write the auto-detection cache {}: {e}",
            file.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static NO_HEADERS: std::collections::BTreeMap<String, String> =
        std::collections::BTreeMap::new();

    fn probe_of<'a>(
        candidates: &'a [String],
        tls: &'a TlsConfig,
        cache: Option<(PathBuf, Duration)>,
    ) -> Probe<'a> {
        Probe {
            server: "t",
            candidates,
            timeout: Duration::from_millis(500),
            tls,
            headers: &NO_HEADERS,
            cache,
            fallback_gateway: false,
        }
    }

    #[tokio::test]
    async fn commands_resolve_through_path_and_dead_ones_are_explained() {
        let tls = TlsConfig::default();
        let candidates = vec![
            "no-such-program-xyz --flag".to_owned(),
            "sh -c 'exit 0'".to_owned(),
        ];
        let found = detect(&probe_of(&candidates, &tls, None)).await.unwrap();
        assert!(
            matches!(found, Detected::Stdio(ref c) if c.program == "sh" && c.args == ["-c", "exit 0"]),
            "{found:?}"
        );
        let dead = vec!["no-such-program-xyz".to_owned(), "ftp://x".to_owned()];
        let err = detect(&probe_of(&dead, &tls, None)).await.unwrap_err();
        assert!(
            err.contains("no-such-program-xyz: 'no-such-program-xyz' is not an executable")
                && err.contains("unknown scheme 'ftp'"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_choice_is_cached_and_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("detect.json");
        let tls = TlsConfig::default();
        let candidates = vec![
            "no-such-program-xyz".to_owned(),
            "sh".to_owned(),
            "true".to_owned(),
        ];
        let p = probe_of(
            &candidates,
            &tls,
            Some((cache.clone(), Duration::from_secs(300))),
        );
        assert!(matches!(detect(&p).await.unwrap(), Detected::Stdio(ref c) if c.program == "sh"));
        assert_eq!(cached_choice(&p), Some(1));
        // An expired entry is ignored.
        let stale = probe_of(&candidates, &tls, Some((cache, Duration::ZERO)));
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(cached_choice(&stale), None);
    }
}
