//! `echo-http`: a Streamable HTTP MCP echo server for benchmarks (hyper, HTTP/1.1 and h2c).
//!
//! POST a JSON-RPC message: a request gets its reply as `application/json`, or with
//! `--sse` as a one-event `text/event-stream`; a notification or response gets `202`.
//! `initialize` hands out an `Mcp-Session-Id` unless `--stateless`. GET answers `405` (no
//! server-initiated stream), DELETE ends nothing and answers `200`. Prints its URL as the
//! first line on stdout once it listens; on SIGTERM prints `{"connections":N,"requests":M}`
//! to stderr (how well clients reuse connections).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mcp_bench::echo::{answer, Answer};

#[derive(Debug, Parser)]
struct Args {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Answer requests with an SSE stream instead of a JSON body.
    #[arg(long)]
    sse: bool,
    /// Do not hand out session ids.
    #[arg(long)]
    stateless: bool,
}

static SESSIONS: AtomicU64 = AtomicU64::new(1);
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static REQUESTS: AtomicU64 = AtomicU64::new(0);

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let addr = listener.local_addr()?;
    mcp_bench::announce(&format!("http://{addr}/mcp"))?;
    let (sse, stateless) = (args.sse, args.stateless);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => a?,
            _ = term.recv() => {
                // What bench/run reads to show connection reuse.
                eprintln!(
                    "{{\"connections\":{},\"requests\":{}}}",
                    CONNECTIONS.load(Ordering::Relaxed),
                    REQUESTS.load(Ordering::Relaxed)
                );
                return Ok(());
            }
        };
        CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, sse, stateless));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    sse: bool,
    stateless: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let status = |code: StatusCode| {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = code;
        Ok(r)
    };
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    match *req.method() {
        Method::POST => {}
        Method::DELETE => return status(StatusCode::OK),
        Method::GET => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r.headers_mut().insert(
                "allow",
                hyper::header::HeaderValue::from_static("POST, DELETE"),
            );
            return Ok(r);
        }
        _ => return status(StatusCode::METHOD_NOT_ALLOWED),
    }
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let reply = match answer(&body) {
        Answer::None => return status(StatusCode::ACCEPTED),
        Answer::Reply(r) => r,
    };
    let is_initialize = body.windows(12).any(|w| w == b"\"initialize\"");
    let mut response = if sse {
        let mut r = Response::new(Full::new(Bytes::from(format!(
            "event: message\ndata: {reply}\n\n"
        ))));
        r.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        r.headers_mut().insert(
            "cache-control",
            hyper::header::HeaderValue::from_static("no-cache"),
        );
        r
    } else {
        let mut r = Response::new(Full::new(Bytes::from(reply)));
        r.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/json"),
        );
        r
    };
    if is_initialize && !stateless {
        let id = format!("bench-session-{}", SESSIONS.fetch_add(1, Ordering::Relaxed));
        if let Ok(v) = hyper::header::HeaderValue::from_str(&id) {
            response.headers_mut().insert("mcp-session-id", v);
        }
    }
    Ok(response)
}
