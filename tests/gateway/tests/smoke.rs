//! Smoke tests of the built `mcp-test-gateway` binary over a Python echo backend:
//! WebSocket envelopes, MCPB TCP in both modes, bearer 401, and `--drop-after`.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Echoes every request as `{"echo": <request>}`, after a notification that must be dropped.
const ECHO: &str = r#"python3 -u -c '
import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if "id" in m and "method" in m:
        print(json.dumps({"jsonrpc": "2.0", "method": "notifications/message", "params": {}}), flush=True)
        print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {"echo": m}}), flush=True)
'"#;

const T: Duration = Duration::from_secs(20);

struct Gateway {
    _child: Child,
    ws: String,
    tcp: String,
}

async fn start(extra: &[&str]) -> Gateway {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-test-gateway"));
    cmd.args([
        "--backend",
        ECHO,
        "--ws",
        "127.0.0.1:0",
        "--tcp",
        "127.0.0.1:0",
    ])
    .args(extra)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn gateway");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    timeout(T, BufReader::new(stdout).read_line(&mut line))
        .await
        .expect("ready in time")
        .expect("read");
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line.starts_with("ready "), "{line}");
    Gateway {
        ws: field("ws"),
        tcp: field("tcp"),
        _child: child,
    }
}

fn envelope(id: i64, method: &str) -> String {
    json!({"id": id, "timestamp": "2026-11-24T10:30:45Z", "source": "local-router",
           "target_namespace": "system", "auth_token": "x",
           "mcp_payload": {"jsonrpc": "2.0", "id": id, "method": method}})
    .to_string()
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn ws_connect(addr: &str, bearer: Option<&str>) -> Result<Ws, WsError> {
    let mut req = format!("ws://{addr}/mcp").into_client_request()?;
    if let Some(b) = bearer {
        req.headers_mut()
            .insert("Authorization", format!("Bearer {b}").parse().unwrap());
    }
    let tcp = TcpStream::connect(addr).await?;
    Ok(timeout(T, tokio_tungstenite::client_async(req, tcp))
        .await
        .expect("handshake in time")?
        .0)
}

async fn ws_next_text(ws: &mut Ws) -> Value {
    loop {
        match timeout(T, ws.next()).await.expect("frame in time") {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn ws_envelope_round_trip_and_validation() {
    let gw = start(&[]).await;
    let mut ws = ws_connect(&gw.ws, None).await.unwrap();
    ws.send(Message::Text(envelope(1, "tools/list").into()))
        .await
        .unwrap();
    let reply = ws_next_text(&mut ws).await;
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["source"], "gateway");
    assert_eq!(reply["timestamp"].as_str().unwrap().len(), 20);
    assert_eq!(reply["mcp_payload"]["id"], 1);
    assert_eq!(
        reply["mcp_payload"]["result"]["echo"]["method"],
        "tools/list"
    );

    ws.send(Message::Text(
        r#"{"id":2,"timestamp":"x","source":"local-router"}"#.into(),
    ))
    .await
    .unwrap();
    let reply = ws_next_text(&mut ws).await;
    assert_eq!(reply["mcp_payload"]["error"]["code"], -32603);
    assert_eq!(
        reply["mcp_payload"]["error"]["message"],
        "VALIDATION: missing MCP payload"
    );
    assert_eq!(reply["mcp_payload"]["id"], 2);

    // The backend's notification before each reply was dropped: the next reply is id 3's.
    ws.send(Message::Text(envelope(3, "ping").into()))
        .await
        .unwrap();
    assert_eq!(ws_next_text(&mut ws).await["mcp_payload"]["id"], 3);
}

#[tokio::test]
async fn ws_bearer_is_checked() {
    let gw = start(&["--token", "good"]).await;
    match ws_connect(&gw.ws, Some("bad")).await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 401);
            assert_eq!(resp.body().as_deref(), Some(&b"Unauthorized\n"[..]));
        }
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(ws_connect(&gw.ws, None).await, Err(WsError::Http(r)) if r.status() == 401));
    let mut ws = ws_connect(&gw.ws, Some("good")).await.unwrap();
    ws.send(Message::Text(envelope(1, "tools/list").into()))
        .await
        .unwrap();
    assert_eq!(ws_next_text(&mut ws).await["mcp_payload"]["id"], 1);
}

#[tokio::test]
async fn ws_drop_after_one() {
    let gw = start(&["--drop-after", "1"]).await;
    let mut ws = ws_connect(&gw.ws, None).await.unwrap();
    ws.send(Message::Text(envelope(1, "tools/list").into()))
        .await
        .unwrap();
    assert_eq!(ws_next_text(&mut ws).await["mcp_payload"]["id"], 1);
    ws.send(Message::Text(envelope(2, "tools/list").into()))
        .await
        .unwrap();
    match timeout(T, ws.next()).await.expect("drop in time") {
        None | Some(Err(_)) => {}
        other => panic!("expected the connection to drop without a close frame, got {other:?}"),
    }
}

fn frame(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x4d, 0x43, 0x50, 0x42, 0, 1];
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads one frame: (type, payload), or None at end of stream.
async fn read_frame(s: &mut TcpStream) -> Option<(u16, Vec<u8>)> {
    let mut header = [0u8; 12];
    timeout(T, s.read_exact(&mut header))
        .await
        .expect("frame in time")
        .ok()?;
    assert_eq!(&header[..6], &[0x4d, 0x43, 0x50, 0x42, 0, 1]);
    let kind = u16::from_be_bytes([header[6], header[7]]);
    let len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let mut payload = vec![0u8; len];
    timeout(T, s.read_exact(&mut payload))
        .await
        .expect("payload in time")
        .ok()?;
    Some((kind, payload))
}

const NEGOTIATION: &[u8] =
    br#"{"max_version":1,"min_version":1,"preferred_version":1,"supported_versions":[1]}"#;
const TOOLS_LIST: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

#[tokio::test]
async fn tcp_frontend_mode_has_no_ack() {
    let gw = start(&[]).await;
    let mut s = TcpStream::connect(&gw.tcp).await.unwrap();
    assert_eq!(NEGOTIATION.len(), 80);
    s.write_all(&frame(6, NEGOTIATION)).await.unwrap();
    s.write_all(&frame(1, TOOLS_LIST)).await.unwrap();
    let (kind, payload) = read_frame(&mut s).await.expect("a response");
    assert_eq!(
        kind, 2,
        "frontend mode answers the request, never the negotiation"
    );
    let reply: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["result"]["echo"]["method"], "tools/list");
}

#[tokio::test]
async fn tcp_handler_mode_acks_and_rejects_notifications() {
    let gw = start(&["--tcp-mode", "handler"]).await;
    let mut s = TcpStream::connect(&gw.tcp).await.unwrap();
    s.write_all(&frame(6, NEGOTIATION)).await.unwrap();
    assert_eq!(
        read_frame(&mut s).await,
        Some((7, br#"{"agreed_version":1}"#.to_vec()))
    );
    s.write_all(&frame(1, TOOLS_LIST)).await.unwrap();
    let (kind, payload) = read_frame(&mut s).await.expect("a response");
    assert_eq!(kind, 2);
    assert_eq!(serde_json::from_slice::<Value>(&payload).unwrap()["id"], 1);
    s.write_all(&frame(4, b"")).await.unwrap();
    assert_eq!(read_frame(&mut s).await, Some((4, vec![])));
    s.write_all(&frame(
        1,
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    ))
    .await
    .unwrap();
    let (kind, payload) = read_frame(&mut s).await.expect("an error");
    assert_eq!(kind, 2);
    let err: Value = serde_json::from_slice(&payload).unwrap();
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Invalid request ID: "));
    assert_eq!(
        read_frame(&mut s).await,
        None,
        "closed after the invalid id"
    );
}

#[tokio::test]
async fn tcp_handler_mode_requires_negotiation_first() {
    let gw = start(&["--tcp-mode", "handler"]).await;
    let mut s = TcpStream::connect(&gw.tcp).await.unwrap();
    s.write_all(&frame(1, TOOLS_LIST)).await.unwrap();
    assert_eq!(
        read_frame(&mut s).await,
        Some((5, b"Version negotiation required".to_vec()))
    );
    assert_eq!(read_frame(&mut s).await, None);
}

#[tokio::test]
async fn tcp_drop_after_writes_half_a_reply() {
    let gw = start(&["--drop-after", "1"]).await;
    let mut s = TcpStream::connect(&gw.tcp).await.unwrap();
    s.write_all(&frame(1, TOOLS_LIST)).await.unwrap();
    assert_eq!(read_frame(&mut s).await.expect("first reply").0, 2);
    s.write_all(&frame(
        1,
        br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    ))
    .await
    .unwrap();
    let mut rest = Vec::new();
    timeout(T, s.read_to_end(&mut rest))
        .await
        .expect("close in time")
        .unwrap();
    assert!(rest.len() > 12, "the header and part of the payload");
    let len = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
    assert_eq!(rest.len(), 12 + len / 2);
}

#[tokio::test]
async fn sigterm_sends_the_shutdown_notice() {
    let gw = start(&[]).await;
    let mut ws = ws_connect(&gw.ws, None).await.unwrap();
    ws.send(Message::Text(envelope(1, "ping").into()))
        .await
        .unwrap();
    ws_next_text(&mut ws).await;
    let pid = gw._child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let notice = ws_next_text(&mut ws).await;
    assert_eq!(
        notice,
        json!({"jsonrpc":"2.0","error":{"code":-32603,"message":"Server shutting down"},"id":null})
    );
}

/// A bare HTTP/1.1 POST; returns (status, body).
async fn post(addr: &str, path: &str, extra_header: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra_header}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    timeout(T, s.read_to_end(&mut raw))
        .await
        .expect("answer in time")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap())
}

#[tokio::test]
async fn oauth_tokens_open_the_websocket() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-test-gateway"));
    cmd.args([
        "--backend",
        ECHO,
        "--ws",
        "127.0.0.1:0",
        "--oauth",
        "127.0.0.1:0",
    ])
    .args([
        "--oauth-client",
        "app:s3cret",
        "--oauth-user",
        "ann:pw",
        "--advertised-ttl-secs",
        "60",
    ])
    .stdout(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    timeout(T, BufReader::new(stdout).read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    let get = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap()
            .to_string()
    };
    let (ws_addr, oauth) = (get("ws="), get("oauth="));

    let (status, body) = post(
        &oauth,
        "/token",
        "",
        "grant_type=client_credentials&client_id=app&client_secret=bad",
    )
    .await;
    assert_eq!((status, body), (401, json!({"error": "invalid_client"})));
    let (status, body) = post(
        &oauth,
        "/token",
        "",
        "grant_type=password&username=ann&password=no",
    )
    .await;
    assert_eq!((status, body), (400, json!({"error": "invalid_grant"})));
    // HTTP Basic: base64("app:s3cret").
    let (status, body) = post(
        &oauth,
        "/token",
        "Authorization: Basic YXBwOnMzY3JldA==\r\n",
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 60);
    let token = body["access_token"].as_str().unwrap();
    let mut ws = ws_connect(&ws_addr, Some(token)).await.unwrap();
    ws.send(Message::Text(envelope(1, "tools/list").into()))
        .await
        .unwrap();
    assert_eq!(ws_next_text(&mut ws).await["mcp_payload"]["id"], 1);
    assert!(
        matches!(ws_connect(&ws_addr, Some("forged")).await, Err(WsError::Http(r)) if r.status() == 401)
    );
}
