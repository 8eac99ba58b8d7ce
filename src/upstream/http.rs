//! A Streamable HTTP MCP server (`http://`, `https://`), both eras.
//!
//! Each client message becomes one POST (reqwest: pooled keep-alive connections, HTTP/2
//! where offered, rustls with verification on). A request's reply is a JSON body or an SSE
//! stream carrying notifications and server→client requests, then the response; each
//! message goes through the router to the client as the bytes the server sent. A
//! notification or response gets `202`. Handshake era: the `Mcp-Session-Id` from
//! `initialize` goes on every later POST with `MCP-Protocol-Version`; a `404` on a session
//! means the session is gone, so the client's own handshake is replayed (reply swallowed)
//! and the message sent again; a GET stream carries server-initiated messages; the session
//! is DELETEd on shutdown. 2026-07-28: no session, the routing headers (`MCP-Protocol-Version`,
//! `Mcp-Method`, `Mcp-Name`) mirror the body; cancelling closes the POST's stream.
//! What happens to a message is decided by the router; this module only moves it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use tokio::task::AbortHandle;
use tracing::Instrument;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error_chain;
use crate::router::{cancelled_request_id, Conn, Port};
use crate::wire::{ErrorKind, Id, Kind, Message, RouterError};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
/// How long a lost GET stream waits before it is opened again, unless the server said
/// otherwise with `retry:`.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// How often one request's reply stream may be resumed before the request fails.
const MAX_RESUMES: u32 = 20;
/// A server's `retry:` is honoured up to this.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

type ReplyEvents = std::pin::Pin<
    Box<
        dyn futures_util::Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

/// Everything a Streamable HTTP upstream needs.
pub struct HttpUpstream {
    pub name: String,
    pub url: String,
    /// Extra headers on every request (e.g. `Authorization`); values are secrets.
    pub headers: BTreeMap<String, String>,
    pub max_message_size: usize,
    pub connect_timeout: Duration,
    pub tls: crate::config::TlsConfig,
    pub shutdown_grace: Duration,
}

/// State shared by the dispatcher and the per-request tasks.
struct Shared {
    name: String,
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    max: usize,
    port: Port,
    /// HTTP has no connection to lose: one generation for the upstream's whole life.
    conn: Conn,
    session: Mutex<Option<String>>,
    /// One re-initialization at a time; the others wait and then use its session.
    reinit: tokio::sync::Mutex<()>,
    /// In-flight request streams, so a cancellation can close them.
    inflight: Mutex<HashMap<Id, AbortHandle>>,
    get_stream: Mutex<Option<AbortHandle>>,
    /// `x-mcp-header` marks learned from `tools/list` replies (2026-07-28).
    param_marks: Mutex<super::param_headers::Marks>,
}

/// Why a POST did not produce its answer.
enum PostError {
    /// `404` on a request that carried a session id.
    SessionGone,
    Failed(String),
}

#[derive(Deserialize)]
struct Routing<'a> {
    #[serde(borrow)]
    params: Option<RoutingParams<'a>>,
}

#[derive(Deserialize)]
struct RoutingParams<'a> {
    #[serde(borrow)]
    name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    uri: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "_meta", borrow)]
    meta: Option<RoutingMeta<'a>>,
    #[serde(borrow)]
    arguments: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct RoutingMeta<'a> {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow)]
    version: Option<std::borrow::Cow<'a, str>>,
}

impl HttpUpstream {
    /// Sends messages until shutdown; never gives up (each failure answers its request).
    pub async fn run(self, port: Port, shutdown: CancellationToken, tracker: TaskTracker) {
        let url = match reqwest::Url::parse(&self.url) {
            Ok(u) => u,
            Err(e) => {
                let text = format!(
                    "server '{}': '{}' is not a valid URL: {e}",
                    self.name, self.url
                );
                port.give_up(text).await;
                return;
            }
        };
        let client = match super::http_client(self.connect_timeout, &self.tls) {
            Ok(c) => c,
            Err(e) => {
                port.give_up(format!(
                    "server '{}': cannot set up the HTTP client: {e}",
                    self.name
                ))
                .await;
                return;
            }
        };
        let headers = super::header_map(&self.name, &self.headers);
        // There is no connection to wait for: the first POST opens one.
        let conn = port.connected();
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            client,
            url,
            headers,
            max: self.max_message_size,
            port: port.clone(),
            conn,
            session: Mutex::new(None),
            reinit: tokio::sync::Mutex::new(()),
            inflight: Mutex::new(HashMap::new()),
            get_stream: Mutex::new(None),
            param_marks: Mutex::new(Default::default()),
        });
        let mut batch = Vec::with_capacity(64);
        'run: loop {
            batch.clear();
            if !port.pull(conn, &mut batch, 64) {
                break;
            }
            if batch.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break 'run,
                    _ = port.ready() => continue,
                }
            }
            for msg in batch.drain(..) {
                tokio::select! {
                    _ = shutdown.cancelled() => break 'run,
                    _ = dispatch(&shared, &tracker, msg) => {}
                }
            }
        }
        if let Some(h) = lock(&shared.get_stream).take() {
            h.abort();
        }
        let session = lock(&shared.session).clone();
        if let Some(session) = session {
            let delete = shared
                .client
                .delete(shared.url.clone())
                .headers(shared.headers.clone())
                .header(SESSION_HEADER, session)
                .send();
            match tokio::time::timeout(self.shutdown_grace, delete).await {
                Ok(Ok(r)) => {
                    tracing::debug!(upstream = %self.name, status = %r.status(), "session ended")
                }
                Ok(Err(e)) => {
                    tracing::debug!(upstream = %self.name, "ending the session failed: {e}")
                }
                Err(_) => tracing::debug!(upstream = %self.name, "ending the session timed out"),
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends one client message. `initialize`, notifications and responses are sent in order
/// (the next message waits for their status); a request's reply streams in its own task.
async fn dispatch(shared: &Arc<Shared>, tracker: &TaskTracker, msg: Message) {
    if msg.method() == Some("notifications/cancelled") {
        if let Some(target) = cancelled_request_id(msg.raw()) {
            // Closing the POST's stream is how 2026-07-28 cancels; in the handshake era the
            // notification below does, and the stream has nothing left the client wants.
            if let Some(h) = lock(&shared.inflight).remove(&target) {
                h.abort();
            }
        }
    }
    let concurrent = msg.kind() == Kind::Request && msg.method() != Some("initialize");
    if !concurrent {
        send(shared.clone(), msg).await;
        return;
    }
    let Some(id) = msg.id().cloned() else { return };
    let task_shared = shared.clone();
    let task_id = id.clone();
    let handle = tracker.spawn(
        async move {
            send(task_shared.clone(), msg).await;
            lock(&task_shared.inflight).remove(&task_id);
        }
        .instrument(tracing::debug_span!("post", %id)),
    );
    lock(&shared.inflight).insert(id, handle.abort_handle());
}

/// POSTs a message, re-initializing once if the session is gone, and answers the client
/// with an error if the message (a request) got no answer.
async fn send(shared: Arc<Shared>, msg: Message) {
    let mut outcome = post(&shared, &msg).await;
    if let Err(PostError::SessionGone) = outcome {
        outcome = match reinitialize(&shared).await {
            Ok(()) => post(&shared, &msg).await,
            Err(e) => Err(PostError::Failed(e)),
        };
    }
    let text = match outcome {
        Ok(()) => return,
        Err(PostError::SessionGone) => format!(
            "server '{}' lost the session again right after it was re-established",
            shared.name
        ),
        Err(PostError::Failed(text)) => text,
    };
    tracing::warn!(upstream = %shared.name, "{text}");
    if let (Kind::Request, Some(id)) = (msg.kind(), msg.id()) {
        let err = RouterError::new(ErrorKind::UpstreamUnavailable, text);
        shared.port.fail_request(id, &err).await;
    }
}

fn build_post(shared: &Shared, msg: &Message, session: Option<&str>) -> reqwest::RequestBuilder {
    let mut req = shared
        .client
        .post(shared.url.clone())
        .headers(shared.headers.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json, text/event-stream");
    if let Some(s) = session {
        req = req.header(SESSION_HEADER, s);
    }
    // Only 2026-07-28 messages need their params read: skip the parse for the rest.
    static VERSION_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| {
            memchr::memmem::Finder::new(b"io.modelcontextprotocol/protocolVersion")
        });
    let routing = VERSION_KEY
        .find(msg.raw())
        .and_then(|_| serde_json::from_slice::<Routing>(msg.raw()).ok())
        .and_then(|r| r.params);
    let stateless_version = routing
        .as_ref()
        .and_then(|p| p.meta.as_ref())
        .and_then(|m| m.version.clone());
    if let Some(version) = stateless_version {
        // 2026-07-28: the headers must say what the body says.
        req = req.header(VERSION_HEADER, version.as_ref());
        if let Some(method) = msg.method() {
            req = req.header("mcp-method", method);
        }
        let name = match msg.method() {
            Some("tools/call" | "prompts/get") => routing.as_ref().and_then(|p| p.name.clone()),
            Some("resources/read") => routing.as_ref().and_then(|p| p.uri.clone()),
            _ => None,
        };
        if let Some(name) = &name {
            req = req.header("mcp-name", super::param_headers::header_value(name));
        }
        if let (Some("tools/call"), Some(tool)) = (msg.method(), &name) {
            let marks = lock(&shared.param_marks).get(tool.as_ref()).cloned();
            let arguments = routing.as_ref().and_then(|p| p.arguments);
            if let (Some(marks), Some(arguments)) = (marks.filter(|m| !m.is_empty()), arguments) {
                if let Ok(arguments) = serde_json::from_str::<serde_json::Value>(arguments.get()) {
                    for (header, value) in super::param_headers::headers(&marks, &arguments) {
                        req = req.header(header, value);
                    }
                }
            }
        }
    } else if msg.method() != Some("initialize") {
        if let Some(v) = shared.port.negotiated_version() {
            req = req.header(VERSION_HEADER, v);
        }
    }
    req.body(msg.raw().clone())
}

async fn post(shared: &Shared, msg: &Message) -> Result<(), PostError> {
    let session = lock(&shared.session).clone();
    let resp = build_post(shared, msg, session.as_deref())
        .send()
        .await
        .map_err(|e| {
            PostError::Failed(format!(
                "cannot reach server '{}' at {}: {}",
                shared.name,
                shared.url,
                error_chain(&e)
            ))
        })?;
    let status = resp.status();
    if status == StatusCode::NOT_FOUND && session.is_some() {
        return Err(PostError::SessionGone);
    }
    if msg.method() == Some("initialize") && status.is_success() {
        if let Some(s) = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            *lock(&shared.session) = Some(s.to_owned());
        }
    }
    if msg.kind() != Kind::Request {
        return if status.is_success() {
            Ok(())
        } else {
            Err(PostError::Failed(format!(
                "server '{}' refused a {} with HTTP {status}",
                shared.name,
                msg.method().unwrap_or("response")
            )))
        };
    }
    let delivered = read_reply(shared, resp, None).await?;
    if delivered == 0 {
        return Err(PostError::Failed(format!(
            "server '{}' answered HTTP {status} without a JSON-RPC response",
            shared.name
        )));
    }
    if msg.method() == Some("initialize") && status.is_success() {
        start_get_stream(shared);
    }
    Ok(())
}

/// Reads a reply body (JSON or SSE) and hands each message to the router. Returns how many
/// messages were delivered. With `swallow`, the response to that id is returned to the
/// caller through the slot instead (a replayed `initialize`).
async fn read_reply(
    shared: &Shared,
    resp: Response,
    mut swallow: Option<(&Id, &mut Option<Message>)>,
) -> Result<usize, PostError> {
    let status = resp.status();
    let is_sse = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut delivered = 0;
    if !is_sse {
        if resp.content_length().is_some_and(|n| n > shared.max as u64) {
            return Err(PostError::Failed(format!("the reply from server '{}' is over the {}-byte message limit (raise local.max_message_size)", shared.name, shared.max)));
        }
        let body = read_limited(resp, shared.max).await.map_err(|e| {
            PostError::Failed(format!(
                "reading the reply from server '{}' failed: {e}",
                shared.name
            ))
        })?;
        match Message::parse(body.clone()) {
            Ok(msg) => {
                deliver(shared, msg, &mut swallow).await;
                delivered += 1;
            }
            Err(_) if !status.is_success() => {
                let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                return Err(PostError::Failed(format!(
                    "server '{}' answered HTTP {status}: {}",
                    shared.name,
                    snippet.trim()
                )));
            }
            Err(e) => {
                return Err(PostError::Failed(format!(
                    "server '{}' sent a reply that is not JSON-RPC: {e}",
                    shared.name
                )))
            }
        }
        return Ok(delivered);
    }
    // A stream that ends before its response is resumed with `GET` + `Last-Event-ID`
    // (servers with an event store close streams on purpose to make clients poll).
    let mut events: ReplyEvents = Box::pin(resp.bytes_stream().eventsource());
    let mut last_event: Option<String> = None;
    let mut retry = DEFAULT_RETRY;
    let mut resumes = 0;
    loop {
        let ended = match events.next().await {
            Some(Ok(event)) => {
                if !event.id.is_empty() {
                    last_event = Some(event.id.clone());
                }
                if let Some(r) = event.retry {
                    retry = r;
                }
                if event.data.is_empty() {
                    continue;
                }
                if event.data.len() > shared.max {
                    tracing::warn!(upstream = %shared.name, len = event.data.len(), "dropping an SSE event over the message limit");
                    continue;
                }
                match Message::parse(Bytes::from(event.data)) {
                    Ok(msg) => {
                        let is_response = msg.kind() == Kind::Response;
                        deliver(shared, msg, &mut swallow).await;
                        delivered += 1;
                        if is_response {
                            // The response ends the stream's purpose; don't wait for the close.
                            return Ok(delivered);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(upstream = %shared.name, "ignoring an SSE event that is not JSON-RPC: {e}")
                    }
                }
                continue;
            }
            Some(Err(e)) => format!("broke ({e})"),
            None => "ended".to_owned(),
        };
        let Some(last) = last_event.clone().filter(|_| resumes < MAX_RESUMES) else {
            return Err(PostError::Failed(format!(
                "the reply stream from server '{}' {ended} before the response",
                shared.name
            )));
        };
        resumes += 1;
        tracing::debug!(upstream = %shared.name, last_event = %last, "reply stream {ended}; resuming");
        tokio::time::sleep(retry.min(MAX_RETRY_WAIT)).await;
        events = Box::pin(resume(shared, &last).await?.bytes_stream().eventsource());
    }
}

/// Reopens a reply stream after `last_event`.
async fn resume(shared: &Shared, last_event: &str) -> Result<Response, PostError> {
    let mut req = shared
        .client
        .get(shared.url.clone())
        .headers(shared.headers.clone())
        .header(ACCEPT, "text/event-stream")
        .header("last-event-id", last_event);
    if let Some(s) = lock(&shared.session).clone() {
        req = req.header(SESSION_HEADER, s);
    }
    if let Some(v) = shared.port.negotiated_version() {
        req = req.header(VERSION_HEADER, v);
    }
    let resp = req.send().await.map_err(|e| {
        PostError::Failed(format!(
            "resuming the reply stream from server '{}' failed: {}",
            shared.name,
            error_chain(&e)
        ))
    })?;
    if !resp.status().is_success() {
        return Err(PostError::Failed(format!(
            "server '{}' refused to resume the reply stream (HTTP {})",
            shared.name,
            resp.status()
        )));
    }
    Ok(resp)
}

async fn read_limited(mut resp: Response, max: usize) -> Result<Bytes, String> {
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e))? {
        if buf.len() + chunk.len() > max {
            return Err(format!(
                "over the {max}-byte message limit (raise local.max_message_size)"
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

async fn deliver(shared: &Shared, msg: Message, swallow: &mut Option<(&Id, &mut Option<Message>)>) {
    if let Some((id, slot)) = swallow {
        if msg.kind() == Kind::Response && msg.id() == Some(*id) {
            **slot = Some(msg);
            return;
        }
    }
    if msg.kind() == Kind::Response {
        super::param_headers::learn(msg.raw(), &mut lock(&shared.param_marks));
    }
    shared.port.deliver(shared.conn, msg).await;
}

/// The server forgot the session: replay the client's handshake without a session id.
async fn reinitialize(shared: &Shared) -> Result<(), String> {
    let stale = lock(&shared.session).clone();
    let _guard = shared.reinit.lock().await;
    if *lock(&shared.session) != stale {
        return Ok(()); // someone else already did it
    }
    *lock(&shared.session) = None;
    let Some(hs) = shared.port.handshake() else {
        return Err(format!("server '{}' lost the session and the client's handshake is not known, so it cannot be restored", shared.name));
    };
    tracing::info!(upstream = %shared.name, "session expired on the server; replaying the client's handshake");
    let id = shared.port.fresh_id("reinit");
    let init = hs.initialize.with_id(&id);
    let resp = build_post(shared, &init, None).send().await.map_err(|e| {
        format!(
            "re-initializing server '{}' failed: {}",
            shared.name,
            error_chain(&e)
        )
    })?;
    if !resp.status().is_success() {
        return Err(format!(
            "server '{}' refused the replayed initialize with HTTP {}",
            shared.name,
            resp.status()
        ));
    }
    if let Some(s) = resp
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        *lock(&shared.session) = Some(s.to_owned());
    }
    let mut reply = None;
    read_reply(shared, resp, Some((&id, &mut reply)))
        .await
        .map_err(|e| match e {
            PostError::Failed(t) => t,
            PostError::SessionGone => "session lost during re-initialization".into(),
        })?;
    match reply.as_ref().map(super::replay_outcome) {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            return Err(format!(
                "server '{}' refused the replayed initialize: {e}",
                shared.name
            ))
        }
        None => {
            return Err(format!(
                "server '{}' did not answer the replayed initialize",
                shared.name
            ))
        }
    }
    if let Some(initialized) = &hs.initialized {
        let session = lock(&shared.session).clone();
        let _ = build_post(shared, initialized, session.as_deref())
            .send()
            .await;
    }
    start_get_stream(shared);
    Ok(())
}

/// Opens (or reopens) the GET stream for server-initiated messages, if there is a session.
fn start_get_stream(shared: &Shared) {
    let Some(session) = lock(&shared.session).clone() else {
        return;
    };
    let (client, url, headers, name) = (
        shared.client.clone(),
        shared.url.clone(),
        shared.headers.clone(),
        shared.name.clone(),
    );
    let (port, conn, max) = (shared.port.clone(), shared.conn, shared.max);
    let task = tokio::spawn(
        async move {
            let mut last_event: Option<String> = None;
            let mut retry = DEFAULT_RETRY;
            loop {
                let mut req = client
                    .get(url.clone())
                    .headers(headers.clone())
                    .header(ACCEPT, "text/event-stream")
                    .header(SESSION_HEADER, &session);
                if let Some(v) = port.negotiated_version() {
                    req = req.header(VERSION_HEADER, v);
                }
                if let Some(id) = &last_event {
                    req = req.header("last-event-id", id);
                }
                match req.send().await {
                    Ok(resp) if resp.status().is_success() => {
                        let mut events = resp.bytes_stream().eventsource();
                        while let Some(Ok(event)) = events.next().await {
                            if !event.id.is_empty() {
                                last_event = Some(event.id.clone());
                            }
                            if let Some(r) = event.retry {
                                retry = r;
                            }
                            if event.data.is_empty() || event.data.len() > max {
                                continue;
                            }
                            if let Ok(msg) = Message::parse(Bytes::from(event.data)) {
                                port.deliver(conn, msg).await;
                            }
                        }
                    }
                    Ok(resp) => {
                        // 405: the server has no such stream; 404: the session is gone (the
                        // next POST notices and re-initializes, which reopens this).
                        tracing::debug!(upstream = %name, status = %resp.status(), "no server-initiated stream");
                        return;
                    }
                    Err(e) => tracing::debug!(upstream = %name, "server-initiated stream failed: {}", error_chain(&e)),
                }
                tokio::time::sleep(retry).await;
            }
        }
        .instrument(tracing::debug_span!("get_stream")),
    );
    if let Some(old) = lock(&shared.get_stream).replace(task.abort_handle()) {
        old.abort();
    }
}
