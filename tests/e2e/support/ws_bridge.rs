//! A WebSocket MCP server for the tests: no SDK offers a WebSocket transport, so this
//! bridge serves a real stdio MCP server (the Python SDK's, server-everything …) over
//! WebSocket — one child process per connection, one JSON-RPC message per text frame.
//! `drop_connections` cuts every live connection (and its child) to test reconnection.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;

pub struct WsBridge {
    pub url: String,
    pub connections: Arc<AtomicUsize>,
    /// The subprotocol the last client offered.
    pub offered_protocol: Arc<std::sync::Mutex<Option<String>>>,
    cut: watch::Sender<u64>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl WsBridge {
    pub fn start(command: Vec<String>) -> WsBridge {
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (cut, cut_rx) = watch::channel(0u64);
        let connections = Arc::new(AtomicUsize::new(0));
        let offered = Arc::new(std::sync::Mutex::new(None));
        let (conns, offered2) = (connections.clone(), offered.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr: SocketAddr = listener.local_addr().unwrap();
                url_tx.send(format!("ws://{addr}/mcp")).unwrap();
                let serve = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            return;
                        };
                        conns.fetch_add(1, Ordering::SeqCst);
                        let (command, cut_rx, offered) =
                            (command.clone(), cut_rx.clone(), offered2.clone());
                        tokio::spawn(serve_one(stream, command, cut_rx, offered));
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stop_rx => {}
                }
            });
        });
        WsBridge {
            url: url_rx.recv().unwrap(),
            connections,
            offered_protocol: offered,
            cut,
            _stop: stop_tx,
        }
    }

    pub fn drop_connections(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

async fn serve_one(
    stream: tokio::net::TcpStream,
    command: Vec<String>,
    mut cut: watch::Receiver<u64>,
    offered: Arc<std::sync::Mutex<Option<String>>>,
) {
    #[allow(clippy::result_large_err)] // tungstenite's callback signature
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let proto = req
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if proto
            .as_deref()
            .is_some_and(|p| p.split(',').any(|x| x.trim() == "mcp"))
        {
            resp.headers_mut()
                .insert("sec-websocket-protocol", "mcp".parse().unwrap());
        }
        *offered.lock().unwrap() = proto;
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    cut.mark_unchanged();
    loop {
        tokio::select! {
            _ = cut.changed() => break,
            frame = source.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    if stdin.write_all(t.as_bytes()).await.is_err() || stdin.write_all(b"\n").await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    if sink.send(Message::text(line)).await.is_err() {
                        break;
                    }
                }
                _ => break,
            },
        }
    }
    let _ = child.kill().await;
}
