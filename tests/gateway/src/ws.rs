//! The WebSocket frontend: upgrade checks (path 404, `--refuse` 503, bearer 401), then one
//! envelope at a time per connection — the next frame is not read until the reply is
//! written — with pings every 30 s, the 1009 size limit, `--drop-after`, close on token
//! expiry, and the shutdown notice on SIGTERM.

use crate::auth::Grant;
use crate::backend::Backend;
use crate::envelope;
use crate::gojson;
use crate::route::{expects_reply, route, Outcome};
use crate::shared::Shared;
use crate::tls::{self, Accepted, Stream};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::{interval_at, sleep_until, Instant};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const PING_PERIOD: Duration = Duration::from_secs(30);
const SHUTDOWN_NOTICE: &str = "Server shutting down";

type Sink = SplitSink<WebSocketStream<Box<dyn Stream>>, Message>;
type Source = SplitStream<WebSocketStream<Box<dyn Stream>>>;

/// WebSocket listener settings.
pub struct WsSettings {
    pub path: String,
    pub max_message: usize,
}

/// Accepts connections until shutdown.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    settings: Arc<WsSettings>,
    shared: Arc<Shared>,
) {
    while let Some((tcp, peer)) = shared.next_connection(&listener, "ws").await {
        let (tls, settings, shared) = (tls.clone(), settings.clone(), shared.clone());
        tokio::spawn(async move {
            let label = shared.label("ws", peer);
            match tls::accept(tcp, tls.as_ref()).await {
                Ok(acc) => connection(acc, &label, &settings, &shared).await,
                Err(e) => eprintln!("[gw] {label}: {e}"),
            }
        });
    }
}

fn refusal(status: StatusCode, body: &str) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(body.to_string()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        "Content-Type",
        "text/plain; charset=utf-8".parse().expect("static header"),
    );
    headers.insert(
        "X-Content-Type-Options",
        "nosniff".parse().expect("static header"),
    );
    resp
}

/// Why an upgrade is refused: HTTP status, body, and the log reason.
struct Refusal(StatusCode, &'static str, String);

/// The upgrade decision, in the gateway's order: route (404), connection limit (503), auth (401).
fn decide(
    req: &Request,
    acc_cert: bool,
    settings: &WsSettings,
    shared: &Shared,
) -> Result<Option<Grant>, Refusal> {
    if settings.path != "/" && req.uri().path() != settings.path {
        let why = format!("path {} not found", req.uri().path());
        return Err(Refusal(StatusCode::NOT_FOUND, "404 page not found\n", why));
    }
    if shared.faults.refuse {
        let body = "service connection limit reached: 1/1 is unavailable\n";
        let why = "fault: refuse (503)".into();
        return Err(Refusal(StatusCode::SERVICE_UNAVAILABLE, body, why));
    }
    if shared.faults.reject_auth {
        let why = "fault: reject-auth (401)".into();
        return Err(Refusal(StatusCode::UNAUTHORIZED, "Unauthorized\n", why));
    }
    if !shared.auth.enabled() || acc_cert {
        return Ok(None);
    }
    let header = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok());
    match shared.auth.check_header(header) {
        Some(grant) => Ok(Some(grant)),
        None => {
            let why = "auth: rejected bearer (401)".into();
            Err(Refusal(StatusCode::UNAUTHORIZED, "Unauthorized\n", why))
        }
    }
}

// The callback's error type (an HTTP response) is fixed by tungstenite.
#[allow(clippy::result_large_err)]
async fn connection(acc: Accepted, label: &str, settings: &WsSettings, shared: &Shared) {
    let client_cert = acc.client_cert;
    let mut verdict: Option<Result<Option<Grant>, String>> = None;
    let callback = |req: &Request, resp: Response| match decide(req, client_cert, settings, shared)
    {
        Ok(grant) => {
            verdict = Some(Ok(grant));
            Ok(resp)
        }
        Err(Refusal(status, body, why)) => {
            verdict = Some(Err(why));
            Err(refusal(status, body))
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(settings.max_message))
        .max_frame_size(Some(settings.max_message));
    let handshake =
        tokio_tungstenite::accept_hdr_async_with_config(acc.stream, callback, Some(config));
    let ws = tokio::time::timeout(Duration::from_secs(10), handshake).await;
    match &verdict {
        Some(Err(why)) => eprintln!("[gw] {label}: upgrade refused: {why}"),
        Some(Ok(grant)) => eprintln!(
            "[gw] {label}: connected (auth: {})",
            match (shared.auth.enabled(), client_cert, grant) {
                (false, _, _) => "off",
                (true, true, _) => "client certificate",
                (true, false, Some(Grant::Forever)) => "static token",
                (true, false, _) => "issued token",
            }
        ),
        None => {}
    }
    let ws = match ws {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            if verdict.is_none() {
                eprintln!("[gw] {label}: handshake failed: {e}");
            }
            return;
        }
        Err(_) => return eprintln!("[gw] {label}: handshake timed out"),
    };
    let expiry = match verdict {
        Some(Ok(Some(grant))) if shared.auth.close_on_expiry => grant.expiry(),
        _ => None,
    };
    let mut backend = Backend::spawn(&shared.backend);
    let (sink, source) = ws.split();
    let mut conn = Conn {
        sink,
        label,
        shared,
        answered: 0,
    };
    conn.run(source, &mut backend, expiry).await;
    backend.shutdown().await;
    eprintln!("[gw] {label}: closed");
}

struct Conn<'a> {
    sink: Sink,
    label: &'a str,
    shared: &'a Shared,
    answered: u64,
}

/// What ends a connection loop.
enum End {
    Continue,
    Stop,
}

impl Conn<'_> {
    async fn run(&mut self, mut source: Source, backend: &mut Backend, expiry: Option<Instant>) {
        let mut ping = interval_at(Instant::now() + PING_PERIOD, PING_PERIOD);
        let far = Instant::now() + Duration::from_secs(100 * 365 * 86_400);
        loop {
            let frame = tokio::select! {
                biased;
                _ = self.shared.shutting_down() => return self.shutdown_notice().await,
                _ = sleep_until(expiry.unwrap_or(far)), if expiry.is_some() => {
                    eprintln!("[gw] {}: token expired, closing", self.label);
                    let frame = CloseFrame { code: CloseCode::Policy, reason: "token expired".into() };
                    let _ = self.sink.send(Message::Close(Some(frame))).await;
                    return;
                }
                _ = ping.tick() => {
                    let _ = self.sink.send(Message::Ping(Default::default())).await;
                    continue;
                }
                f = source.next() => f,
            };
            let text = match frame {
                None => return,
                Some(Err(WsError::Capacity(e))) => {
                    eprintln!("[gw] {}: {e}: closing 1009", self.label);
                    let frame = CloseFrame {
                        code: CloseCode::Size,
                        reason: "".into(),
                    };
                    let _ = self.sink.send(Message::Close(Some(frame))).await;
                    return;
                }
                Some(Err(e)) => return eprintln!("[gw] {}: read error: {e}", self.label),
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(_)) => continue,
            };
            if let End::Stop = self.handle(text.as_str(), backend, &mut ping).await {
                return;
            }
        }
    }

    async fn handle(
        &mut self,
        text: &str,
        backend: &mut Backend,
        ping: &mut tokio::time::Interval,
    ) -> End {
        let env = match envelope::parse(text) {
            Ok(env) => env,
            Err(invalid) => {
                eprintln!("[gw] {}: {}", self.label, invalid.message);
                let body = gojson::internal_error(&invalid.id, &invalid.message);
                return self.send(&invalid.id, &body).await;
            }
        };
        let wants_reply = expects_reply(&env.payload);
        if wants_reply && self.shared.faults.drop_after == Some(self.answered) {
            eprintln!(
                "[gw] {}: fault: drop-after {}: dropping connection",
                self.label, self.answered
            );
            return End::Stop;
        }
        if !env.target_namespace.is_empty() {
            eprintln!(
                "[gw] {}: target_namespace={}",
                self.label, env.target_namespace
            );
        }
        let delay = self.shared.faults.delay_ms;
        let outcome = {
            let fut = route(backend, &env.payload, delay, self.label);
            tokio::pin!(fut);
            loop {
                tokio::select! {
                    biased;
                    _ = self.shared.shutting_down() => {
                        self.shutdown_notice().await;
                        return End::Stop;
                    }
                    o = &mut fut => break o,
                    _ = ping.tick() => {
                        let _ = self.sink.send(Message::Ping(Default::default())).await;
                    }
                }
            }
        };
        match outcome {
            Outcome::NoReply => End::Continue,
            Outcome::Reply { id, text } => {
                let end = self.send(&id, &text).await;
                if wants_reply {
                    self.answered += 1;
                }
                end
            }
        }
    }

    async fn send(&mut self, id: &Value, payload: &str) -> End {
        let frame = envelope::reply(id, payload);
        match self.sink.send(Message::Text(frame.into())).await {
            Ok(()) => End::Continue,
            Err(e) => {
                eprintln!("[gw] {}: write error: {e}", self.label);
                End::Stop
            }
        }
    }

    /// The bare (unwrapped) shutdown error the gateway sends before closing.
    async fn shutdown_notice(&mut self) {
        eprintln!("[gw] {}: shutdown notice", self.label);
        let notice = gojson::internal_error(&Value::Null, SHUTDOWN_NOTICE);
        let _ = self.sink.send(Message::Text(notice.into())).await;
    }
}
