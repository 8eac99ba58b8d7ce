//! `echo-ws`: a WebSocket MCP echo server for benchmarks (tokio-tungstenite): one JSON-RPC
//! message per text frame, subprotocol `mcp` accepted when offered. Prints its URL as the
//! first line on stdout once it listens.

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use mcp_bench::echo::{answer, Answer};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let addr = listener.local_addr()?;
    mcp_bench::announce(&format!("ws://{addr}/mcp"))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, pick_mcp).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                let reply = match msg {
                    Message::Text(text) => answer(text.as_bytes()),
                    Message::Binary(bytes) => answer(&bytes),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if let Answer::Reply(r) = reply {
                    if ws.send(Message::text(r)).await.is_err() {
                        break;
                    }
                }
            }
        });
    }
}

/// Accepts the `mcp` subprotocol when the client offers it.
// The callback's signature (and its large error type) is tungstenite's.
#[allow(clippy::result_large_err)]
fn pick_mcp(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let offered = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == "mcp"));
    if offered {
        resp.headers_mut().insert(
            "sec-websocket-protocol",
            tokio_tungstenite::tungstenite::http::HeaderValue::from_static("mcp"),
        );
    }
    Ok(resp)
}
