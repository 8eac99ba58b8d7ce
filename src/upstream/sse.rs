//! A legacy HTTP+SSE MCP server (protocol 2024-11-05): `GET` the SSE URL, take the
//! `endpoint` event, `POST` each client message there (`202`), read every reply and
//! server message as `message` events on the stream.
//!
//! The stream is the session: when it drops, the requests it carried get an error, it is
//! opened again with backoff, and the client's handshake is replayed on the new session
//! (reply swallowed) before anything queued is sent. POSTs are sent in order, one at a
//! time (they answer at once; the replies come on the stream), each bounded by
//! `local.request_timeout_ms` and given up on at shutdown.
//!
//! The `endpoint` event must name a URL on the SSE stream's own origin (scheme, host,
//! port): every message, with the configured headers (often a bearer token), is POSTed
//! there, so an endpoint elsewhere is refused and the upstream gives up.
//!
//! Reached directly for `…/sse` URLs, or from a Streamable HTTP upstream whose first POST
//! the server refused ([`SseUpstream::run_with`] then sends that message first).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use tracing::Instrument;

use super::reconnect::{connection_lost, End, Pacing};
use super::stdio::Links;
use crate::config::ReconnectPolicy;
use crate::router::{Handshake, Router, UpstreamDecision};
use crate::telemetry::redact;
use crate::wire::Message;

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// Everything a legacy SSE supervisor needs.
pub struct SseUpstream {
    pub name: String,
    pub url: String,
    /// Extra headers on every request (values may be secrets).
    pub headers: BTreeMap<String, String>,
    pub connect_timeout: Duration,
    pub tls: crate::config::TlsConfig,
    pub reconnect: ReconnectPolicy,
    pub max_message_size: usize,
    pub request_timeout: Duration,
}

/// What a running supervisor uses to talk HTTP.
struct Http {
    client: reqwest::Client,
    headers: HeaderMap,
}

/// An open SSE session: where to POST, and the rest of the stream.
struct Session {
    endpoint: reqwest::Url,
    events: Events,
}

/// Why no session could be opened.
enum OpenError {
    /// Worth another try later (the server is down, the stream broke).
    Retry(String),
    /// The server answered, but not with a legacy SSE stream (a non-2xx status, no
    /// `endpoint` event): worth another try only if it was one before.
    NotSse(String),
    /// Trying again would do the same thing (an endpoint on another origin).
    Refused(String),
}

impl SseUpstream {
    pub async fn run(self, links: Links) {
        self.run_with(links, None).await
    }

    /// Like [`run`](Self::run), but sends `first` before anything else: the message a
    /// Streamable HTTP upstream handed over, unanswered, when the server refused its POST.
    pub async fn run_with(self, mut links: Links, first: Option<Message>) {
        let mut first = first;
        let http = match super::http_client(self.connect_timeout, &self.tls) {
            Ok(client) => Http {
                client,
                headers: super::header_map(&self.name, &self.headers),
            },
            Err(e) => {
                super::give_up(
                    &links,
                    format!("server '{}': cannot set up the HTTP client: {e}", self.name),
                )
                .await;
                return;
            }
        };
        let mut pacing = Pacing::new(&self.name, &self.reconnect);
        loop {
            let started = Instant::now();
            let end = tokio::select! {
                _ = links.shutdown.cancelled() => End::Shutdown,
                s = self.open(&http) => match s {
                    Ok(session) => self.connection(&http, session, &mut links, first.take()).await,
                    Err(OpenError::Refused(text)) => {
                        super::give_up(&links, text).await;
                        return;
                    }
                    Err(OpenError::NotSse(e)) if first.is_some() => {
                        // It refused the POST and the GET: nothing MCP lives at this URL.
                        let text = format!("{e}; it refused a Streamable HTTP POST too, so {} is neither a Streamable HTTP nor a legacy SSE MCP endpoint: check the server's url", redact::url(&self.url));
                        super::give_up(&links, text).await;
                        return;
                    }
                    Err(OpenError::Retry(e) | OpenError::NotSse(e)) if first.take().is_some() => {
                        // The handed-over message waits for an answer no session can give
                        // now: it fails, like anything carried by a lost connection.
                        let reason = format!("{e} (it refused a Streamable HTTP POST, so it was tried as a legacy HTTP+SSE server)");
                        connection_lost(&self.name, reason, &links).await
                    }
                    Err(OpenError::Retry(e) | OpenError::NotSse(e)) => End::Lost(e),
                },
            };
            let End::Lost(reason) = end else { return };
            if !pacing.wait(started, &reason, &links).await {
                return;
            }
        }
    }

    /// GETs the stream and waits for the `endpoint` event.
    async fn open(&self, http: &Http) -> Result<Session, OpenError> {
        let shown = redact::url(&self.url);
        let base = reqwest::Url::parse(&self.url).map_err(|e| {
            OpenError::Refused(format!(
                "server '{}': '{shown}' is not a valid URL ({e}); fix its url in the configuration",
                self.name
            ))
        })?;
        let resp = http
            .client
            .get(base.clone())
            .headers(http.headers.clone())
            .header(ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| {
                OpenError::Retry(format!(
                    "cannot reach server '{}' at {shown}: {}",
                    self.name,
                    redact::reqwest_error(e)
                ))
            })?;
        if !resp.status().is_success() {
            return Err(OpenError::NotSse(format!(
                "server '{}' answered the SSE GET with HTTP {}",
                self.name,
                resp.status()
            )));
        }
        let mut events: Events = Box::pin(resp.bytes_stream().eventsource());
        let wait = async {
            while let Some(event) = events.next().await {
                let event =
                    event.map_err(|e| format!("the SSE stream broke: {}", redact::sse_error(e)))?;
                if event.event == "endpoint" {
                    // The data is a URL with the session in it: never shown raw.
                    return base.join(event.data.trim()).map_err(|e| {
                        format!(
                            "server '{}' sent an endpoint that is not a URL ({e})",
                            self.name
                        )
                    });
                }
            }
            Err("the SSE stream ended before the endpoint event".to_owned())
        };
        let endpoint = tokio::time::timeout(self.request_timeout, wait)
            .await
            .map_err(|_| {
                OpenError::NotSse(format!("server '{}' sent no endpoint event", self.name))
            })?
            .map_err(OpenError::Retry)?;
        if endpoint.origin() != base.origin() {
            let text = format!(
                "server '{}' named {} as the URL to POST messages to, which is on another origin than its SSE stream {shown}; mcp-router refuses to send messages (and the configured headers) there. Use a server whose endpoint is on its own origin, or point mcp-router at the other server directly",
                self.name,
                redact::url(endpoint.as_str())
            );
            return Err(OpenError::Refused(text));
        }
        tracing::info!(upstream = %self.name, endpoint = %redact::url(endpoint.as_str()), "SSE session open");
        Ok(Session { endpoint, events })
    }

    /// A POST; `None` at shutdown (the POST is dropped).
    async fn post_or_stop(
        &self,
        http: &Http,
        endpoint: &reqwest::Url,
        body: Bytes,
        links: &Links,
    ) -> Option<Result<(), String>> {
        tokio::select! {
            _ = links.shutdown.cancelled() => None,
            r = self.post(http, endpoint, body) => Some(r),
        }
    }

    /// A POST, bounded by `request_timeout`: a server that never acknowledges one must not
    /// hold the session (nor the router's exit) forever.
    async fn post(&self, http: &Http, endpoint: &reqwest::Url, body: Bytes) -> Result<(), String> {
        let send = http
            .client
            .post(endpoint.clone())
            .headers(http.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send();
        let resp = tokio::time::timeout(self.request_timeout, send)
            .await
            .map_err(|_| {
                format!(
                    "server '{}' did not acknowledge a message within {} (local.request_timeout_ms)",
                    self.name,
                    humantime::format_duration(self.request_timeout)
                )
            })?
            .map_err(|e| {
                format!(
                    "posting to server '{}' failed: {}",
                    self.name,
                    redact::reqwest_error(e)
                )
            })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "server '{}' refused a message with HTTP {}",
                self.name,
                resp.status()
            ))
        }
    }

    async fn connection(
        &self,
        http: &Http,
        mut session: Session,
        links: &mut Links,
        first: Option<Message>,
    ) -> End {
        if let Some(hs) = links.router.handshake() {
            if let Err(e) = self.replay(http, &mut session, hs).await {
                return End::Lost(format!("session replay failed: {e}"));
            }
            tracing::info!(upstream = %self.name, "client session replayed on the new SSE session");
        }
        let reader = tokio::spawn(
            read_events(
                session.events,
                links.router.clone(),
                links.to_client.clone(),
                self.max_message_size,
            )
            .instrument(tracing::info_span!("sse_reader", upstream = %self.name)),
        );
        let mut reader = std::pin::pin!(reader);
        let (gen, queued) = links.router.upstream_up();
        let mut result = Ok(());
        // The handed-over message came before anything the router queued.
        for msg in first.into_iter().chain(queued) {
            if result.is_ok() {
                match self
                    .post_or_stop(http, &session.endpoint, msg.into_raw(), links)
                    .await
                {
                    Some(r) => result = r,
                    None => {
                        reader.abort();
                        return End::Shutdown;
                    }
                }
            }
        }
        let reason = loop {
            if let Err(e) = &result {
                break e.clone();
            }
            tokio::select! {
                _ = links.shutdown.cancelled() => {
                    reader.abort();
                    return End::Shutdown;
                }
                r = &mut reader => {
                    break match r {
                        Ok(why) => format!("server '{}' {why}", self.name),
                        Err(_) => format!("server '{}' stream reader stopped", self.name),
                    };
                }
                out = links.from_router.recv() => {
                    let Some(out) = out else {
                        reader.abort();
                        return End::Shutdown;
                    };
                    if out.gen == gen {
                        match self.post_or_stop(http, &session.endpoint, out.msg.into_raw(), links).await {
                            Some(r) => result = r,
                            None => {
                                reader.abort();
                                return End::Shutdown;
                            }
                        }
                    }
                }
            }
        };
        reader.abort();
        connection_lost(&self.name, reason, links).await
    }

    async fn replay(
        &self,
        http: &Http,
        session: &mut Session,
        hs: Handshake,
    ) -> Result<(), String> {
        let id = super::replay_id();
        self.post(
            http,
            &session.endpoint,
            hs.initialize.with_id(&id).into_raw(),
        )
        .await?;
        let wait = async {
            while let Some(event) = session.events.next().await {
                let event =
                    event.map_err(|e| format!("the SSE stream broke: {}", redact::sse_error(e)))?;
                if let Some(outcome) = super::replay_reply(&id, Bytes::from(event.data)) {
                    return outcome;
                }
            }
            Err("the stream ended during the replay".to_owned())
        };
        super::await_replay(self.request_timeout, wait).await?;
        if let Some(initialized) = hs.initialized {
            self.post(http, &session.endpoint, initialized.into_raw())
                .await?;
        }
        Ok(())
    }
}

/// Reads `message` events until the stream ends; returns why it ended.
async fn read_events(
    mut events: Events,
    router: Arc<Router>,
    to_client: tokio::sync::mpsc::Sender<Bytes>,
    max: usize,
) -> String {
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => return format!("SSE stream failed: {}", redact::sse_error(e)),
        };
        if event.data.is_empty() || !(event.event.is_empty() || event.event == "message") {
            continue;
        }
        if event.data.len() > max {
            tracing::warn!(
                len = event.data.len(),
                "dropping an SSE message over the size limit"
            );
            continue;
        }
        match Message::parse(Bytes::from(event.data)) {
            Ok(msg) => {
                if let UpstreamDecision::Deliver(bytes) = router.from_upstream(msg) {
                    if to_client.send(bytes).await.is_err() {
                        return "client is gone".into();
                    }
                }
            }
            Err(e) => {
                tracing::warn!("server sent an SSE message that is not JSON-RPC (ignored): {e}")
            }
        }
    }
    "closed the SSE stream".into()
}
