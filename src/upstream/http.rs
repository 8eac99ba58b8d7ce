//! A Streamable HTTP MCP server (`http://`, `https://`), both eras.
//!
//! Each client message becomes one POST (reqwest: pooled keep-alive connections, HTTP/2
//! where offered, rustls with verification on). A request's reply is a JSON body or an SSE
//! stream carrying notifications and server→client requests, then the response; each
//! message goes through the router to the client as the bytes the server sent. A
//! notification or response gets `202`. Handshake era: the `Mcp-Session-Id` from
//! `initialize` goes on every later POST with `MCP-Protocol-Version`; a `404` on a session
//! means the session is gone, so the client's own handshake is replayed (reply swallowed)
//! and the message sent again; a GET stream carries server-initiated messages (reopened
//! when it ends, paced by the server's `reconnect.*`, see [`get_stream_wait`]); the session
//! is DELETEd on shutdown. 2026-07-28: no session, the routing headers (`MCP-Protocol-Version`,
//! `Mcp-Method`, `Mcp-Name`) mirror the body; cancelling closes the POST's stream.
//!
//! Nothing is probed before the client speaks (the spec's backwards-compatibility rule):
//! the client's first message is POSTed, and if the server refuses it with 400/404/405
//! and no JSON-RPC answer, it is a legacy HTTP+SSE server: [`HttpUpstream::run`] returns
//! [`LegacySse`] with that message, still unanswered, for the SSE upstream to send first.
//! Until some POST has been answered, nothing else is sent.
//!
//! Every POST is bounded: a request's by its deadline (`local.request_timeout_ms` from
//! arrival), any other message's by `local.request_timeout_ms` of its own. Notifications,
//! responses and `initialize` go in order (the next message waits for their answer, since
//! a server may need `notifications/initialized` before the next request), but only for
//! [`ORDERED_WAIT`] (or until `initialize`'s deadline): a server that never acknowledges
//! one must not stall the session. The core's concurrency limit bounds the request POSTs
//! in flight (it hands out no more requests). On shutdown every POST still open is aborted.
//! What happens to a message is decided by the router; this module only moves it, and its
//! every call into the router goes through [`ToRouter`] (and `run`'s start).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::ReconnectPolicy;
use crate::resilience::backoff::Backoff;
use crate::router::{cancelled_request_id, Conn, Handshake, Port};
use crate::telemetry::redact;
use crate::wire::{ErrorKind, Id, Kind, Message, RouterError};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
/// How long a reply stream that ended before its response waits before it is resumed,
/// unless the server said otherwise with `retry:`.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// A server's `retry:` is honoured from this (`retry: 0` would reconnect in a hot loop)…
const MIN_RETRY: Duration = Duration::from_millis(100);
/// …up to this.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);
/// A GET stream that ends this soon without a message was closed "at once": each such
/// close in a row lengthens the wait before the next GET (see [`get_stream_wait`]).
const QUICK_CLOSE: Duration = Duration::from_secs(1);
/// How often one request's reply stream may be resumed before the request fails.
const MAX_RESUMES: u32 = 20;
/// How long a notification or response holds back the messages after it (see the module
/// doc); a healthy server acknowledges in milliseconds.
const ORDERED_WAIT: Duration = Duration::from_secs(1);
/// The session DELETE at shutdown is a courtesy: the router's exit waits for it at most
/// this long (and never longer than `local.shutdown_grace_ms`).
const DELETE_WAIT: Duration = Duration::from_millis(500);

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
    /// `local.request_timeout_ms`: bounds every POST (see the module doc).
    pub request_timeout: Duration,
    /// `servers[].reconnect`: paces reopening the GET stream.
    pub reconnect: ReconnectPolicy,
}

/// The server is a legacy HTTP+SSE server: it refused the first POST with 400/404/405.
/// The messages taken (the first one still unanswered, then any after it) went back to
/// the front of the outbox; the SSE upstream carries on with the same port.
pub struct LegacySse;

/// Every call this upstream makes into the core, in one place: the port, and the one
/// connection generation HTTP has for its whole life.
#[derive(Clone)]
struct ToRouter {
    port: Port,
    conn: Conn,
}

impl ToRouter {
    /// A message from the server; the core decides whether the client gets it.
    async fn deliver(&self, msg: Message) {
        self.port.deliver(&self.conn, msg).await
    }

    /// The server could not answer request `id`: the client gets `text` (unless the
    /// request was already answered, e.g. timed out).
    async fn fail(&self, id: &Id, text: String) {
        let err = RouterError::new(ErrorKind::UpstreamUnavailable, text);
        self.port.fail_request(id, &err).await
    }

    /// The server refused request `id` (4xx): the client gets `text`; the server's health
    /// is not in question.
    async fn refuse(&self, id: &Id, text: String) {
        let err = RouterError::new(ErrorKind::UpstreamUnavailable, text);
        self.port.refuse_request(id, &err).await
    }

    fn negotiated_version(&self) -> Option<String> {
        self.port.negotiated_version()
    }

    fn handshake(&self) -> Option<Handshake> {
        self.port.handshake()
    }

    fn fresh_id(&self, what: &str) -> Id {
        self.port.fresh_id(what)
    }
}

/// State shared by the dispatcher and the per-message tasks.
struct Shared {
    name: String,
    client: reqwest::Client,
    url: reqwest::Url,
    /// `url` as logs and errors show it: no userinfo, no query.
    shown: String,
    headers: HeaderMap,
    max: usize,
    port: ToRouter,
    session: Mutex<Option<String>>,
    /// One re-initialization at a time; the others wait and then use its session.
    reinit: tokio::sync::Mutex<()>,
    get_stream: Mutex<Option<AbortHandle>>,
    /// `x-mcp-header` marks learned from `tools/list` replies (2026-07-28).
    param_marks: Mutex<super::param_headers::Marks>,
    /// Paces reopening the GET stream.
    reconnect: ReconnectPolicy,
}

/// Why a POST did not produce its answer.
enum PostError {
    /// `404` on a request that carried a session id.
    SessionGone,
    /// The server could not be reached or failed (a transport failure: 5xx, reset, …).
    Failed(String),
    /// The server answered, refusing this message (4xx): nothing wrong with its health.
    Refused(String),
}

/// What a POST's answer said about the server, once its status and headers are in.
enum Verdict {
    StreamableHttp,
    /// Refused with this status and no JSON-RPC answer: a legacy HTTP+SSE server.
    Legacy(StatusCode),
}

/// Told when a POST's answer is in (the session id, if any, recorded), so the messages
/// after it may go.
struct Answered {
    tx: oneshot::Sender<Verdict>,
    /// The first POST to be answered decides the transport (see the module doc).
    probing: bool,
}

/// The message the next ones wait for: until `answered` fires or `until` passes.
struct Gate {
    answered: oneshot::Receiver<Verdict>,
    until: Instant,
    /// The message itself while its answer decides the transport.
    probe: Option<Message>,
    method: Option<Box<str>>,
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
    /// Returns [`LegacySse`] when the server turned out to be a legacy HTTP+SSE server.
    pub async fn run(self, port: Port, shutdown: CancellationToken) -> Option<LegacySse> {
        let shown = redact::url(&self.url);
        let url = match reqwest::Url::parse(&self.url) {
            Ok(u) => u,
            Err(e) => {
                let text = format!(
                    "server '{}': '{shown}' is not a valid URL ({e}); fix its url in the configuration",
                    self.name
                );
                port.give_up(text).await;
                return None;
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
                return None;
            }
        };
        let headers = super::header_map(&self.name, &self.headers);
        // There is no connection to wait for: the first POST opens one.
        let conn = port.connected();
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            client,
            url,
            shown,
            headers,
            max: self.max_message_size,
            port: ToRouter {
                port: port.clone(),
                conn: conn.clone(),
            },
            session: Mutex::new(None),
            reinit: tokio::sync::Mutex::new(()),
            get_stream: Mutex::new(None),
            param_marks: Mutex::new(Default::default()),
            reconnect: self.reconnect.clone(),
        });
        let mut d = Dispatcher {
            shared: shared.clone(),
            request_timeout: self.request_timeout,
            requests: JoinSet::new(),
            by_task: HashMap::new(),
            by_request: HashMap::new(),
            others: JoinSet::new(),
            probing: true,
        };
        // Messages that were queued go through the same gate as any other (the first
        // decides). Taken from the outbox a batch at a time.
        let mut queued = VecDeque::new();
        let mut gate: Option<Gate> = None;
        let legacy = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break None,
                Some(done) = d.requests.join_next_with_id(), if !d.requests.is_empty() => {
                    d.finished(done);
                }
                Some(_) = d.others.join_next(), if !d.others.is_empty() => {}
                verdict = gate_opens(&mut gate), if gate.is_some() => {
                    let Some(g) = gate.take() else { continue };
                    match verdict {
                        Some(Verdict::StreamableHttp) => d.probing = false,
                        Some(Verdict::Legacy(status)) => {
                            tracing::info!(upstream = %self.name, %status, "the server refused the first POST: it is a legacy HTTP+SSE server; continuing over its SSE stream");
                            break g.probe;
                        }
                        // Failed, or no answer yet: the POST goes on alone (bounded), and
                        // while probing the next POST asks the question again.
                        None if Instant::now() >= g.until => {
                            tracing::debug!(upstream = %self.name, method = ?g.method, "no answer yet; sending the next messages without waiting for it");
                        }
                        None => {}
                    }
                }
                m = next_message(&mut queued, &port, &conn), if gate.is_none() => match m {
                    Some(msg) => gate = d.dispatch(msg),
                    None => break None,
                }
            }
        };
        // Whatever the server does, nothing of ours stays open past this point.
        d.requests.abort_all();
        d.others.abort_all();
        while d.requests.join_next().await.is_some() {}
        while d.others.join_next().await.is_some() {}
        if let Some(h) = lock(&shared.get_stream).take() {
            h.abort();
        }
        if let Some(first) = legacy {
            let mut handed_back = vec![first];
            handed_back.extend(queued);
            port.hand_back(&conn, handed_back);
            return Some(LegacySse);
        }
        let session = lock(&shared.session).clone();
        if let Some(session) = session {
            let delete = shared
                .client
                .delete(shared.url.clone())
                .headers(shared.headers.clone())
                .header(SESSION_HEADER, session)
                .send();
            match tokio::time::timeout(DELETE_WAIT.min(self.shutdown_grace), delete).await {
                Ok(Ok(r)) => {
                    tracing::debug!(upstream = %self.name, status = %r.status(), "session ended")
                }
                Ok(Err(e)) => {
                    tracing::debug!(upstream = %self.name, "ending the session failed: {}", redact::reqwest_error(e))
                }
                Err(_) => tracing::debug!(upstream = %self.name, "ending the session timed out"),
            }
        }
        None
    }
}

/// The next message from the outbox (pulled a batch at a time); `None` once this
/// connection is no longer the upstream's.
async fn next_message(queued: &mut VecDeque<Message>, port: &Port, conn: &Conn) -> Option<Message> {
    loop {
        if let Some(msg) = queued.pop_front() {
            return Some(msg);
        }
        let mut batch = Vec::with_capacity(64);
        if !port.pull(conn, &mut batch, 64) {
            return None;
        }
        if batch.is_empty() {
            conn.ready().await;
        }
        queued.extend(batch);
    }
}

/// Waits for the gate's message to be answered (`Some`) or for its time to pass (`None`).
/// Pending forever without a gate (the `select!` branch is disabled then).
async fn gate_opens(gate: &mut Option<Gate>) -> Option<Verdict> {
    let Some(g) = gate else {
        return std::future::pending().await;
    };
    tokio::select! {
        v = &mut g.answered => v.ok(),
        _ = tokio::time::sleep_until(g.until.into()) => None,
    }
}

/// Starts each message's POST; owns every POST task, so none outlives the upstream.
struct Dispatcher {
    shared: Arc<Shared>,
    request_timeout: Duration,
    /// Request POSTs in flight (at most the upstream's `max_concurrent_requests`: the
    /// core hands out no more).
    requests: JoinSet<()>,
    by_task: HashMap<tokio::task::Id, Id>,
    /// So a cancellation can close the request's POST.
    by_request: HashMap<Id, AbortHandle>,
    /// POSTs of notifications, responses and `initialize`: each holds back the pipeline
    /// for a bounded time, so they need no cap of their own.
    others: JoinSet<()>,
    /// No POST has been answered yet: the next answer decides the transport.
    probing: bool,
}

impl Dispatcher {
    /// Starts one client message; returns the gate the next message must wait for.
    fn dispatch(&mut self, msg: Message) -> Option<Gate> {
        if msg.method() == Some("notifications/cancelled") {
            if let Some(target) = cancelled_request_id(msg.raw()) {
                self.withdraw(&target);
            }
        }
        let now = Instant::now();
        let deadline = now + self.request_timeout;
        let is_request = msg.kind() == Kind::Request && msg.method() != Some("initialize");
        if is_request && !self.probing {
            self.spawn_request(msg, deadline, None);
            return None;
        }
        let (tx, answered) = oneshot::channel();
        let msg_method = msg.method().map(Into::into);
        let probing = self.probing;
        let probe = probing.then(|| msg.clone());
        let until = if probing || msg.method() == Some("initialize") {
            deadline
        } else {
            now + ORDERED_WAIT.min(self.request_timeout)
        };
        let answered_tx = Some(Answered { tx, probing });
        if is_request {
            self.spawn_request(msg, deadline, answered_tx);
        } else {
            let task = post_task(
                self.shared.clone(),
                msg,
                deadline,
                self.request_timeout,
                answered_tx,
            );
            self.others
                .spawn(task.instrument(tracing::debug_span!("post")));
        }
        Some(Gate {
            answered,
            until,
            probe,
            method: msg_method,
        })
    }

    fn spawn_request(&mut self, msg: Message, deadline: Instant, answered: Option<Answered>) {
        let Some(id) = msg.id().cloned() else { return };
        let task = post_task(
            self.shared.clone(),
            msg,
            deadline,
            self.request_timeout,
            answered,
        );
        let handle = self
            .requests
            .spawn(task.instrument(tracing::debug_span!("post", %id)));
        self.by_task.insert(handle.id(), id.clone());
        if let Some(old) = self.by_request.insert(id, handle) {
            // The client reused the id of a request it gave up on (a timeout): that
            // POST has nobody waiting for it any more.
            old.abort();
        }
    }

    /// A request POST ended (done, failed, or aborted).
    fn finished(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let task = match done {
            Ok((task, ())) => task,
            Err(e) => {
                if e.is_panic() {
                    tracing::error!(upstream = %self.shared.name, "a request POST task panicked");
                }
                e.id()
            }
        };
        if let Some(id) = self.by_task.remove(&task) {
            if self.by_request.get(&id).is_some_and(|h| h.id() == task) {
                self.by_request.remove(&id);
            }
        }
    }

    /// The client cancelled request `target`: close its POST (how 2026-07-28 cancels; in
    /// the handshake era the notification does, and the stream has nothing left the
    /// client wants), or never send it.
    fn withdraw(&mut self, target: &Id) {
        if let Some(h) = self.by_request.remove(target) {
            h.abort();
        }
    }
}

/// One message's POST, bounded by `deadline`.
async fn post_task(
    shared: Arc<Shared>,
    msg: Message,
    deadline: Instant,
    timeout: Duration,
    answered: Option<Answered>,
) {
    let sent = tokio::time::timeout_at(deadline.into(), send(&shared, &msg, answered)).await;
    if sent.is_ok() {
        return;
    }
    let waited = humantime::format_duration(timeout);
    let ids = request_ids(&msg);
    match ids.as_slice() {
        [_, ..] => {
            let text = format!(
                "server '{}' did not answer within {waited} (local.request_timeout_ms)",
                shared.name
            );
            tracing::warn!(upstream = %shared.name, id = ?msg.id(), method = ?msg.method(), "{text}");
            for id in &ids {
                shared.port.fail(id, text.clone()).await;
            }
        }
        [] => tracing::warn!(
            upstream = %shared.name,
            "server '{}' did not acknowledge a {} within {waited} (local.request_timeout_ms); gave up on it",
            shared.name,
            msg.method().unwrap_or("response")
        ),
    }
}

/// The requests a message carries (a request; a batch's request members): what waits for
/// its reply body, and what a failed POST answers.
fn request_ids(msg: &Message) -> Vec<Id> {
    match msg.kind() {
        Kind::Request => msg.id().cloned().into_iter().collect(),
        Kind::Batch => msg
            .items()
            .iter()
            .filter(|i| i.kind == Kind::Request)
            .filter_map(|i| i.id.clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether the server answers this POST with a body (JSON or SSE), not a bare `202`.
fn expects_reply(msg: &Message) -> bool {
    match msg.kind() {
        Kind::Request => true,
        Kind::Batch => msg.items().iter().any(|i| i.kind == Kind::Request),
        _ => false,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// POSTs a message, re-initializing once if the session is gone, and answers the client
/// with an error if the message (a request) got no answer.
async fn send(shared: &Shared, msg: &Message, mut answered: Option<Answered>) {
    let mut outcome = post(shared, msg, &mut answered).await;
    if let Err(PostError::SessionGone) = outcome {
        outcome = match reinitialize(shared).await {
            Ok(()) => post(shared, msg, &mut answered).await,
            Err(e) => Err(PostError::Failed(e)),
        };
    }
    let (text, transport) = match outcome {
        Ok(()) => return,
        Err(PostError::SessionGone) => (
            format!(
                "server '{}' lost the session again right after it was re-established",
                shared.name
            ),
            true,
        ),
        Err(PostError::Failed(text)) => (text, true),
        Err(PostError::Refused(text)) => (text, false),
    };
    tracing::warn!(upstream = %shared.name, "{text}");
    for id in request_ids(msg) {
        if transport {
            shared.port.fail(&id, text.clone()).await;
        } else {
            shared.port.refuse(&id, text.clone()).await;
        }
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

fn is_sse(resp: &Response) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

async fn post(
    shared: &Shared,
    msg: &Message,
    answered: &mut Option<Answered>,
) -> Result<(), PostError> {
    let session = lock(&shared.session).clone();
    let resp = build_post(shared, msg, session.as_deref())
        .send()
        .await
        .map_err(|e| {
            PostError::Failed(format!(
                "cannot reach server '{}' at {}: {}",
                shared.name,
                shared.shown,
                redact::reqwest_error(e)
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
    let mut after_reply = None;
    if let Some(a) = answered.take() {
        if a.probing && matches!(status.as_u16(), 400 | 404 | 405) && !is_sse(&resp) {
            return probe_refusal(shared, msg, resp, a.tx).await;
        }
        if msg.method() == Some("initialize") {
            // What follows `initialize` waits until the router has seen its reply: the
            // negotiated version goes on every later POST.
            after_reply = Some(a.tx);
        } else {
            let _ = a.tx.send(Verdict::StreamableHttp);
        }
    }
    if !expects_reply(msg) {
        return if status.is_success() {
            Ok(())
        } else {
            Err(refused(shared, msg, status))
        };
    }
    let read = read_reply(shared, resp, None).await;
    if let Some(tx) = after_reply {
        let _ = tx.send(Verdict::StreamableHttp);
    }
    let delivered = read?;
    if delivered == 0 {
        let text = format!(
            "server '{}' answered HTTP {status} without a JSON-RPC response",
            shared.name
        );
        return Err(if status.is_server_error() {
            PostError::Failed(text)
        } else {
            PostError::Refused(text)
        });
    }
    if msg.method() == Some("initialize") && status.is_success() {
        start_get_stream(shared);
    }
    Ok(())
}

fn refused(shared: &Shared, msg: &Message, status: StatusCode) -> PostError {
    let text = format!(
        "server '{}' refused a {} with HTTP {status}",
        shared.name,
        msg.method().unwrap_or("response")
    );
    if status.is_server_error() {
        PostError::Failed(text)
    } else {
        PostError::Refused(text)
    }
}

/// The first answered POST got 400/404/405. A Streamable HTTP server sends a JSON-RPC
/// error with these too (2026-07-28 maps -32602 to 400 and -32601 to 404): that is an
/// answer. Anything else is a legacy HTTP+SSE server refusing a POST to its stream URL.
async fn probe_refusal(
    shared: &Shared,
    msg: &Message,
    resp: Response,
    verdict: oneshot::Sender<Verdict>,
) -> Result<(), PostError> {
    let status = resp.status();
    // Dropping `verdict` unsent (a failed read) leaves the question to the next POST.
    let body = read_limited(resp, shared.max).await.map_err(|e| {
        PostError::Failed(format!(
            "reading the reply from server '{}' failed: {e}",
            shared.name
        ))
    })?;
    if Message::parse(body.clone()).is_err() {
        return match verdict.send(Verdict::Legacy(status)) {
            // The legacy upstream sends it again; the router still waits for its answer.
            Ok(()) => Ok(()),
            // Nobody waits for the verdict any more (its time ran out): a plain refusal.
            Err(_) => Err(refused(shared, msg, status)),
        };
    }
    let _ = verdict.send(Verdict::StreamableHttp);
    if !expects_reply(msg) {
        return Err(refused(shared, msg, status));
    }
    json_reply(shared, status, body, &mut None)
        .await
        .map(|_| ())
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
    if !is_sse(&resp) {
        if resp.content_length().is_some_and(|n| n > shared.max as u64) {
            return Err(PostError::Failed(format!("the reply from server '{}' is over the {}-byte message limit (raise local.max_message_size)", shared.name, shared.max)));
        }
        let body = read_limited(resp, shared.max).await.map_err(|e| {
            PostError::Failed(format!(
                "reading the reply from server '{}' failed: {e}",
                shared.name
            ))
        })?;
        return json_reply(shared, status, body, &mut swallow).await;
    }
    // A stream that ends before its response is resumed with `GET` + `Last-Event-ID`
    // (servers with an event store close streams on purpose to make clients poll).
    let mut delivered = 0;
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
            Some(Err(e)) => format!("broke ({})", redact::sse_error(e)),
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
        tokio::time::sleep(clamp_retry(retry)).await;
        events = Box::pin(resume(shared, &last).await?.bytes_stream().eventsource());
    }
}

/// A JSON reply body: one message for the router, or why there is none.
async fn json_reply(
    shared: &Shared,
    status: StatusCode,
    body: Bytes,
    swallow: &mut Option<(&Id, &mut Option<Message>)>,
) -> Result<usize, PostError> {
    match Message::parse(body.clone()) {
        Ok(msg) => {
            deliver(shared, msg, swallow).await;
            Ok(1)
        }
        Err(_) if !status.is_success() => {
            let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            Err(PostError::Failed(format!(
                "server '{}' answered HTTP {status}: {}",
                shared.name,
                snippet.trim()
            )))
        }
        Err(e) => Err(PostError::Failed(format!(
            "server '{}' sent a reply that is not JSON-RPC: {e}",
            shared.name
        ))),
    }
}

/// A server's `retry:`, within sane bounds.
fn clamp_retry(retry: Duration) -> Duration {
    retry.clamp(MIN_RETRY, MAX_RETRY_WAIT)
}

/// The waits before the GET stream is opened again, per the server's `reconnect.*`: the
/// first after a stream that lived (delivered something, or stayed open
/// [`QUICK_CLOSE`]) is the server's `retry:` (clamped) if it sent one, else
/// `initial_delay_ms`; each close in a row that came at once (or a GET that failed)
/// multiplies it by `multiplier`, up to `max_delay_ms`, with `jitter` — so a server that
/// closes or refuses the stream again and again gets no hot loop, whatever its `retry:`
/// says. Never given up: `max_attempts` does not apply, since the stream is the only way
/// server-initiated messages arrive while POSTs may well work. Not counted as connection
/// retries either (a server may close the stream on purpose, to be polled).
struct GetPacing {
    policy: ReconnectPolicy,
    backoff: Backoff,
}

impl GetPacing {
    fn new(policy: &ReconnectPolicy) -> Self {
        let policy = ReconnectPolicy {
            max_attempts: None,
            ..policy.clone()
        };
        Self {
            backoff: Backoff::new(policy.clone()),
            policy,
        }
    }

    /// The server sent `retry:`; from now on it is the first wait.
    fn server_retry(&mut self, retry: Duration) {
        let initial = clamp_retry(retry).min(self.policy.max_delay);
        if initial != self.policy.initial_delay {
            self.policy.initial_delay = initial;
            // Its streak goes on: only the delay it grows from changed.
            let failures = self.backoff.failures();
            self.backoff = Backoff::new(self.policy.clone());
            for _ in 0..failures {
                self.backoff.next_delay(0.5);
            }
        }
    }

    /// The wait after a stream ended (`lived`: see above); `sample` is uniform in [0, 1].
    fn wait(&mut self, lived: bool, sample: f64) -> Duration {
        if lived {
            self.backoff.reset();
        }
        // Always `Some`: `max_attempts` was taken out.
        self.backoff
            .next_delay(sample)
            .unwrap_or(self.policy.max_delay)
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
            redact::reqwest_error(e)
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
    while let Some(chunk) = resp.chunk().await.map_err(redact::reqwest_error)? {
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
    shared.port.deliver(msg).await;
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
            redact::reqwest_error(e)
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
            PostError::Failed(t) | PostError::Refused(t) => t,
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
    let (port, max) = (shared.port.clone(), shared.max);
    let mut pacing = GetPacing::new(&shared.reconnect);
    let task = tokio::spawn(
        async move {
            let mut last_event: Option<String> = None;
            loop {
                let opened = Instant::now();
                let mut delivered = 0;
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
                                pacing.server_retry(r);
                            }
                            if event.data.is_empty() || event.data.len() > max {
                                continue;
                            }
                            if let Ok(msg) = Message::parse(Bytes::from(event.data)) {
                                delivered += 1;
                                port.deliver(msg).await;
                            }
                        }
                    }
                    Ok(resp) => {
                        // 405: the server has no such stream; 404: the session is gone (the
                        // next POST notices and re-initializes, which reopens this).
                        tracing::debug!(upstream = %name, status = %resp.status(), "no server-initiated stream");
                        return;
                    }
                    Err(e) => tracing::debug!(upstream = %name, "server-initiated stream failed: {}", redact::reqwest_error(e)),
                }
                let lived = delivered > 0 || opened.elapsed() >= QUICK_CLOSE;
                let wait = pacing.wait(lived, rand::random::<f64>());
                tracing::trace!(upstream = %name, wait_ms = wait.as_millis() as u64, lived, "server-initiated stream ended; reopening");
                tokio::time::sleep(wait).await;
            }
        }
        .instrument(tracing::debug_span!("get_stream")),
    );
    if let Some(old) = lock(&shared.get_stream).replace(task.abort_handle()) {
        old.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_is_clamped() {
        let ms = Duration::from_millis;
        assert_eq!(clamp_retry(Duration::ZERO), MIN_RETRY);
        assert_eq!(clamp_retry(Duration::from_secs(3600)), MAX_RETRY_WAIT);
        assert_eq!(clamp_retry(ms(250)), ms(250));
    }

    fn policy(initial: u64, max: u64, jitter: f64) -> ReconnectPolicy {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(initial),
            max_delay: Duration::from_millis(max),
            multiplier: 2.0,
            max_attempts: Some(2),
            jitter,
        }
    }

    fn waits(p: &mut GetPacing, lived: &[bool]) -> Vec<u128> {
        lived.iter().map(|l| p.wait(*l, 0.5).as_millis()).collect()
    }

    #[test]
    fn get_stream_reopens_follow_the_reconnect_policy_and_never_give_up() {
        let mut p = GetPacing::new(&policy(1000, 60_000, 0.0));
        // A stream that lived: the initial delay, every time.
        assert_eq!(waits(&mut p, &[true, true, true]), [1000, 1000, 1000]);
        // Closed at once again and again: growing by the multiplier, past max_attempts (2),
        // up to max_delay.
        assert_eq!(
            waits(&mut p, &[false; 9]),
            [2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000, 60000]
        );
        assert_eq!(waits(&mut p, &[true, false]), [1000, 2000]);
        // Jitter as everywhere: ±10 % at the sample's edges.
        let mut p = GetPacing::new(&policy(1000, 60_000, 0.1));
        assert_eq!(p.wait(true, 0.0), Duration::from_millis(900));
        assert_eq!(p.wait(true, 1.0), Duration::from_millis(1100));
    }

    #[test]
    fn the_servers_retry_is_the_first_wait_clamped_and_capped() {
        let mut p = GetPacing::new(&policy(1000, 60_000, 0.0));
        p.server_retry(Duration::from_millis(250));
        assert_eq!(waits(&mut p, &[true, false, false]), [250, 500, 1000]);
        // Changing it mid-streak keeps the streak.
        p.server_retry(Duration::from_millis(300));
        assert_eq!(waits(&mut p, &[false, true]), [2400, 300]);
        // `retry: 0` would be a hot loop: 100 ms at least.
        p.server_retry(Duration::ZERO);
        assert_eq!(waits(&mut p, &[true, false]), [100, 200]);
        // Never past max_delay, whatever the server says.
        let mut p = GetPacing::new(&policy(50, 2000, 0.0));
        p.server_retry(Duration::from_secs(3600));
        assert_eq!(waits(&mut p, &[true, false]), [2000, 2000]);
    }
}
