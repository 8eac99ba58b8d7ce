//! A system under test reached over Streamable HTTP: hyper's HTTP/1.1 client on a
//! current-thread runtime, one keep-alive connection per request in flight (each
//! opened once per throughput run, then reused for all its requests). One POST per
//! message (headers and body in one write); a JSON or an SSE reply; the session id from
//! `initialize` sent on every later request.

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::runtime::Runtime;

use crate::transport::{Make, Transport, NET_TIMEOUT};

type Conn = SendRequest<Full<Bytes>>;

pub struct Http {
    rt: Runtime,
    target: Target,
    conn: Conn,
    pid: Option<u32>,
}

/// Where and as whom to POST.
#[derive(Clone)]
struct Target {
    uri: hyper::Uri,
    authority: String,
    session: Option<String>,
}

impl Http {
    pub fn connect(url: &str, pid: Option<u32>) -> anyhow::Result<Self> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("bad URL {url}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("{url}: loadgen speaks plain http:// only");
        }
        let authority = uri
            .authority()
            .map(|a| a.to_string())
            .context("URL without a host")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let target = Target {
            uri,
            authority,
            session: None,
        };
        let conn = rt.block_on(open(&target))?;
        Ok(Self {
            rt,
            target,
            conn,
            pid,
        })
    }
}

async fn open(target: &Target) -> anyhow::Result<Conn> {
    let stream = tokio::time::timeout(
        NET_TIMEOUT,
        tokio::net::TcpStream::connect(&target.authority),
    )
    .await
    .map_err(|_| anyhow!("connecting to {} timed out", target.authority))??;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// POSTs one message; returns the response message (empty for `202`) and the session id
/// header if the server sent one.
async fn post(
    conn: &mut Conn,
    target: &Target,
    line: String,
) -> anyhow::Result<(String, Option<String>)> {
    let mut req = Request::post(target.uri.clone())
        .header("host", &target.authority)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(s) = &target.session {
        req = req
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-11-25");
    }
    conn.ready().await?;
    let resp = tokio::time::timeout(
        NET_TIMEOUT,
        conn.send_request(req.body(Full::new(Bytes::from(line)))?),
    )
    .await
    .map_err(|_| anyhow!("no reply within {NET_TIMEOUT:?}"))??;
    let status = resp.status();
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = resp.into_body().collect().await?.to_bytes();
    if status.as_u16() == 202 {
        return Ok((String::new(), session));
    }
    if !status.is_success() {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    let body = String::from_utf8(body.to_vec())?;
    if !sse {
        return Ok((body, session));
    }
    // The response is the event whose data is a response (not a request or notification).
    for event in body.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        let data = data.join("\n");
        if data.contains("\"id\"") && !data.contains("\"method\"") {
            return Ok((data, session));
        }
    }
    bail!("the SSE reply held no response")
}

impl Transport for Http {
    fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn call(&mut self, line: &str) -> anyhow::Result<String> {
        let (reply, session) =
            self.rt
                .block_on(post(&mut self.conn, &self.target, line.to_owned()))?;
        if self.target.session.is_none() {
            self.target.session = session;
        }
        Ok(reply)
    }

    fn notify(&mut self, line: &str) -> anyhow::Result<()> {
        self.call(line).map(|_| ())
    }

    fn pipeline(
        &mut self,
        make: &Make,
        first_id: u64,
        window: usize,
        total: usize,
    ) -> anyhow::Result<usize> {
        let window = window.clamp(1, total.max(1));
        // Lines are made up front: `make` is not `'static`, tasks are.
        let lines: Vec<String> = (0..total).map(|i| make(first_id + i as u64)).collect();
        let mut chunks: Vec<Vec<String>> = vec![Vec::new(); window];
        for (i, line) in lines.into_iter().enumerate() {
            chunks[i % window].push(line);
        }
        let target = self.target.clone();
        self.rt.block_on(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for chunk in chunks {
                let target = target.clone();
                tasks.spawn(async move {
                    // Its own keep-alive connection, opened before the clock matters little.
                    let mut conn = open(&target).await?;
                    let mut errors = 0usize;
                    for line in chunk {
                        let (reply, _) = post(&mut conn, &target, line).await?;
                        if !reply.contains("\"result\"") {
                            errors += 1;
                        }
                    }
                    anyhow::Ok(errors)
                });
            }
            let mut errors = 0;
            while let Some(r) = tasks.join_next().await {
                errors += r.map_err(|e| anyhow!("a load task failed: {e}"))??;
            }
            Ok(errors)
        })
    }

    fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        if let Some(s) = self.target.session.clone() {
            let req = Request::delete(self.target.uri.clone())
                .header("host", &self.target.authority)
                .header("mcp-session-id", s)
                .body(Full::new(Bytes::new()))?;
            let conn = &mut self.conn;
            let _ = self.rt.block_on(async move {
                conn.ready().await?;
                conn.send_request(req).await.map(|_| ())
            });
        }
        Ok(())
    }
}
