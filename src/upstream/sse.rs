//! A legacy HTTP+SSE MCP server (protocol 2024-11-05): `GET` the SSE URL, take the
//! `endpoint` event, `POST` each client message there (`202`), read every reply and
//! server message as `message` events on the stream.
//!
//! The stream is the connection: the connector opens it and waits for the endpoint
//! (which must be on the SSE URL's own origin: the bearer token and headers go with every
//! POST, and must never be sent elsewhere); the supervisor does the rest. POSTs go in
//! order, one at a time (they answer at once; the replies come on the stream), each
//! bounded by `local.request_timeout_ms`.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};

use super::supervisor::{ConnectError, Inbound, SendError};
use crate::telemetry::redact;
use crate::wire::id_scan::IdScanner;
use crate::wire::Message;

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// How to open a session with the server.
pub struct Connector {
    pub name: String,
    pub url: String,
    /// Extra headers on every request (values may be secrets).
    pub headers: BTreeMap<String, String>,
    pub connect_timeout: Duration,
    pub tls: crate::config::TlsConfig,
    pub max_message_size: usize,
    pub request_timeout: Duration,
    /// Built on first use, then reused by every connection (keep-alive pool).
    pub client: Option<reqwest::Client>,
    /// Tried because the URL refused a Streamable HTTP POST: if it is no SSE stream
    /// either, nothing MCP lives there (until a session opened once).
    pub after_http_refusal: bool,
}

pub struct Writer {
    name: String,
    client: reqwest::Client,
    headers: HeaderMap,
    endpoint: reqwest::Url,
    timeout: Duration,
}

pub struct Reader {
    name: String,
    events: Events,
    max: usize,
}

impl Connector {
    fn client(&mut self) -> Result<reqwest::Client, ConnectError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = super::http_client(self.connect_timeout, &self.tls).map_err(|e| {
            ConnectError::Permanent(format!(
                "server '{}': cannot set up the HTTP client: {e}",
                self.name
            ))
        })?;
        self.client = Some(c.clone());
        Ok(c)
    }

    /// GETs the stream and waits for the `endpoint` event.
    pub(crate) async fn connect(&mut self) -> Result<(Writer, Reader), ConnectError> {
        let client = self.client()?;
        let shown = redact::url(&self.url);
        let base = reqwest::Url::parse(&self.url)
            .map_err(|e| ConnectError::Permanent(format!("'{shown}' is not a valid URL: {e}")))?;
        let headers = super::header_map(&self.name, &self.headers);
        let resp = client
            .get(base.clone())
            .headers(headers.clone())
            .header(ACCEPT, "text/event-stream")
            .send();
        let resp = tokio::time::timeout(self.request_timeout, resp)
            .await
            .map_err(|_| {
                ConnectError::Retry(format!(
                    "server '{}' at {shown} did not answer the SSE GET within {:?}",
                    self.name, self.request_timeout
                ))
            })?
            .map_err(|e| {
                ConnectError::Retry(format!(
                    "cannot reach server '{}' at {shown}: {}",
                    self.name,
                    redact::reqwest_error(e)
                ))
            })?;
        if !resp.status().is_success() {
            let text = format!(
                "server '{}' answered the SSE GET with HTTP {}",
                self.name,
                resp.status()
            );
            if self.after_http_refusal {
                return Err(ConnectError::Permanent(format!(
                    "{text}; it refused a Streamable HTTP POST too, so {shown} is neither a Streamable HTTP nor a legacy SSE MCP endpoint: check the server's url"
                )));
            }
            return Err(ConnectError::Retry(text));
        }
        let mut events: Events = Box::pin(resp.bytes_stream().eventsource());
        let wait = async {
            while let Some(event) = events.next().await {
                let event = event.map_err(|e| {
                    ConnectError::Retry(format!(
                        "server '{}': the SSE stream broke: {}",
                        self.name,
                        redact::sse_error(e)
                    ))
                })?;
                if event.event == "endpoint" {
                    let endpoint = base.join(event.data.trim()).map_err(|e| {
                        ConnectError::Retry(format!(
                            "server '{}' sent an endpoint that is not a URL ({e})",
                            self.name
                        ))
                    })?;
                    if endpoint.origin() != base.origin() {
                        // Permanent: a server that points elsewhere is misconfigured or
                        // hostile, and retrying would not change its answer.
                        return Err(ConnectError::Permanent(format!(
                            "server '{}': its SSE endpoint event names another origin ({}) than {}; refusing to send messages and credentials there",
                            self.name,
                            redact::url(endpoint.as_str()),
                            shown
                        )));
                    }
                    return Ok(endpoint);
                }
            }
            Err(ConnectError::Retry(format!(
                "server '{}': the SSE stream ended before the endpoint event",
                self.name
            )))
        };
        let endpoint = tokio::time::timeout(self.request_timeout, wait)
            .await
            .map_err(|_| {
                ConnectError::Retry(format!("server '{}' sent no endpoint event", self.name))
            })??;
        tracing::info!(upstream = %self.name, endpoint = %redact::url(endpoint.as_str()), "SSE session open");
        self.after_http_refusal = false;
        Ok((
            Writer {
                name: self.name.clone(),
                client,
                headers,
                endpoint,
                timeout: self.request_timeout,
            },
            Reader {
                name: self.name.clone(),
                events,
                max: self.max_message_size,
            },
        ))
    }
}

impl Writer {
    pub(crate) async fn feed(&mut self, msg: Message) -> Result<(), SendError> {
        let post = self
            .client
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(msg.into_raw())
            .send();
        let resp = tokio::time::timeout(self.timeout, post)
            .await
            .map_err(|_| {
                SendError::Broken(format!(
                    "server '{}' did not accept a message within {:?}",
                    self.name, self.timeout
                ))
            })?
            .map_err(|e| {
                SendError::Broken(format!(
                    "posting to server '{}' failed: {}",
                    self.name,
                    redact::reqwest_error(e)
                ))
            })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(SendError::Broken(format!(
                "server '{}' refused a message with HTTP {}",
                self.name,
                resp.status()
            )))
        }
    }
}

impl Reader {
    /// The next `message` event.
    pub(crate) async fn next(&mut self) -> Inbound {
        while let Some(event) = self.events.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    return Inbound::Ended(format!(
                        "server '{}' SSE stream failed: {}",
                        self.name,
                        redact::sse_error(e)
                    ))
                }
            };
            if event.data.is_empty() || !(event.event.is_empty() || event.event == "message") {
                continue;
            }
            if event.data.len() > self.max {
                let mut scan = IdScanner::new();
                scan.feed(event.data.as_bytes());
                return Inbound::Oversized {
                    id: scan.id(),
                    len: event.data.len(),
                    limit: self.max,
                };
            }
            match Message::parse(Bytes::from(event.data)) {
                Ok(msg) => return Inbound::Message(msg),
                Err(e) => {
                    tracing::warn!(upstream = %self.name, "server sent an SSE message that is not JSON-RPC (ignored): {e}")
                }
            }
        }
        Inbound::Ended(format!("server '{}' closed the SSE stream", self.name))
    }
}
