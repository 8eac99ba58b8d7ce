//! A scripted WebSocket peer, for what the bridge cannot do on purpose: stop reading a
//! connection (so its pings go unanswered and writes to it block once the socket buffers
//! fill, while the socket stays open), or answer with a message of a chosen size. The
//! script sees each text frame as JSON (a JSON-RPC message, or a gateway envelope) and
//! says what to do; its receive buffer is small, so a peer that stops reading backs the
//! writer up after little data.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// What the peer does next on a connection.
pub enum Act {
    /// Send these text frames (none: say nothing), keep reading.
    Reply(Vec<String>),
    /// Stop reading this connection for good: no more frames read, no pong, no close.
    GoSilent,
}

/// Called with (connection index from 0, the frame) for every text frame; with `None`
/// once per connection, right after the upgrade.
pub type Script = Box<dyn FnMut(usize, Option<&Value>) -> Act + Send>;

pub struct WsPeer {
    /// `ws://127.0.0.1:PORT/mcp`.
    pub url: String,
    pub port: u16,
    /// Upgrades completed.
    pub connections: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl WsPeer {
    pub fn start(script: Script) -> WsPeer {
        Self::start_on(0, script)
    }

    /// Listens on loopback `port` (0: any free one); panics if it is taken.
    pub fn start_on(port: u16, script: Script) -> WsPeer {
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let connections = Arc::new(AtomicUsize::new(0));
        let conns = connections.clone();
        let script = Arc::new(Mutex::new(script));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                // Inherited by accepted connections: little room before the writer blocks.
                socket.set_recv_buffer_size(4096).unwrap();
                socket
                    .bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
                    .unwrap();
                let listener = socket.listen(16).unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                let serve = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            return;
                        };
                        let (conns, script) = (conns.clone(), script.clone());
                        tokio::spawn(serve_one(stream, conns, script));
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stop_rx => {}
                }
            });
            // Dropping the runtime drops every connection (silent ones included).
        });
        let port = port_rx.recv().unwrap();
        WsPeer {
            url: format!("ws://127.0.0.1:{port}/mcp"),
            port,
            connections,
            _stop: stop_tx,
        }
    }

    /// Accepts the upgrade, then never reads a frame.
    pub fn deaf() -> WsPeer {
        Self::start(Box::new(|_, _| Act::GoSilent))
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve_one(
    stream: tokio::net::TcpStream,
    conns: Arc<AtomicUsize>,
    script: Arc<Mutex<Script>>,
) {
    // No size limit of our own: the router's limits are under test, not ours.
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    // The subprotocol `mcp` when offered (the router's direct client insists on it; the
    // gateway client offers none).
    #[allow(clippy::result_large_err)] // tungstenite's callback signature
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let offered = req
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.split(',').any(|x| x.trim() == "mcp"));
        if offered {
            resp.headers_mut()
                .insert("sec-websocket-protocol", "mcp".parse().unwrap());
        }
        Ok(resp)
    };
    let Ok(ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
    else {
        return;
    };
    let n = conns.fetch_add(1, Ordering::SeqCst);
    let (mut sink, mut source) = ws.split();
    let act = |frame: Option<&Value>| (script.lock().unwrap())(n, frame);
    let mut next = act(None);
    loop {
        match next {
            Act::GoSilent => {
                // Hold both halves open, read nothing, until the peer is stopped.
                let _keep = (sink, source);
                return std::future::pending().await;
            }
            Act::Reply(frames) => {
                for f in frames {
                    if sink.send(Message::text(f)).await.is_err() {
                        return;
                    }
                }
            }
        }
        let text = loop {
            match source.next().await {
                Some(Ok(Message::Text(t))) => break t,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            next = Act::Reply(vec![]);
            continue;
        };
        next = act(Some(&v));
    }
}

/// What a well-behaved MCP server answers to `msg`: `initialize` a minimal result, any
/// other request `{"echo": params}`, a notification nothing.
pub fn answer(msg: &Value) -> Act {
    let Some(id) = msg.get("id") else {
        return Act::Reply(vec![]);
    };
    let result = if msg["method"] == "initialize" {
        json!({
            "protocolVersion": msg["params"]["protocolVersion"].as_str().unwrap_or("2025-06-18"),
            "capabilities": {},
            "serverInfo": {"name": "ws-peer", "version": "1"}
        })
    } else {
        json!({"echo": msg["params"]})
    };
    Act::Reply(vec![
        json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
    ])
}
