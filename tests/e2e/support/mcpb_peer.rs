//! A scripted peer speaking the TCP binary framing, for what the test gateway cannot do:
//! send broken frames on purpose, or act as an MCP server that speaks the framing itself
//! (notifications included). Frames are built here by hand from REFERENCE.md §4, not with
//! the router's codec, so the two check each other.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

pub const MAGIC: u32 = 0x4D43_5042;
pub const LEGACY_MAGIC: u32 = 0x4D43_5000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Framing {
    Mcpb,
    Legacy,
}

pub fn frame(framing: Framing, kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match framing {
        Framing::Mcpb => {
            out.extend_from_slice(&MAGIC.to_be_bytes());
            out.extend_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&kind.to_be_bytes());
        }
        Framing::Legacy => {
            out.extend_from_slice(&LEGACY_MAGIC.to_be_bytes());
            out.extend_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&0u32.to_be_bytes());
        }
    }
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads one frame: (type, payload); `None` at EOF or on a bad header.
pub fn read_frame(s: &mut TcpStream, framing: Framing) -> Option<(u16, Vec<u8>)> {
    let header_len = if framing == Framing::Mcpb { 12 } else { 16 };
    let mut h = vec![0u8; header_len];
    s.read_exact(&mut h).ok()?;
    let magic = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let want = if framing == Framing::Mcpb {
        MAGIC
    } else {
        LEGACY_MAGIC
    };
    if magic != want {
        return None;
    }
    let kind = u16::from_be_bytes([h[6], h[7]]);
    let len = u32::from_be_bytes([
        h[header_len - 4],
        h[header_len - 3],
        h[header_len - 2],
        h[header_len - 1],
    ]) as usize;
    if len > 16 * 1024 * 1024 {
        return None;
    }
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).ok()?;
    Some((kind, p))
}

/// What the peer answers to the n-th request it receives (counted over all connections).
pub type Script = Box<dyn FnMut(usize, &Value) -> Vec<Vec<u8>> + Send>;

/// A listener that serves each connection with `script`; records every frame type seen.
pub struct McpbPeer {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<(u16, Value)>>>,
    pub connections: Arc<Mutex<usize>>,
}

impl McpbPeer {
    pub fn start(framing: Framing, script: Script) -> McpbPeer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let script = Arc::new(Mutex::new(script));
        let (seen2, conns2) = (seen.clone(), connections.clone());
        let counter = Arc::new(Mutex::new(0usize));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                *conns2.lock().unwrap() += 1;
                let (seen, script, counter) = (seen2.clone(), script.clone(), counter.clone());
                thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                    while let Some((kind, payload)) = read_frame(&mut s, framing) {
                        let v: Value = serde_json::from_slice(&payload).unwrap_or(json!(null));
                        seen.lock().unwrap().push((kind, v.clone()));
                        // Only requests are answered (a notification has no id).
                        let is_request = v.get("id").is_some_and(|i| !i.is_null())
                            || v["mcp_payload"].get("id").is_some_and(|i| !i.is_null())
                            || v["message"].get("id").is_some_and(|i| !i.is_null());
                        if kind != 1 || !is_request {
                            continue;
                        }
                        let n = {
                            let mut c = counter.lock().unwrap();
                            *c += 1;
                            *c - 1
                        };
                        let out = (script.lock().unwrap())(n, &v);
                        for bytes in out {
                            if bytes.is_empty() {
                                // An empty write in the script means: close now.
                                let _ = s.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            if s.write_all(&bytes).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        McpbPeer {
            port,
            seen,
            connections,
        }
    }

    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

/// A Response frame echoing `req`'s params as the result.
pub fn echo_reply(framing: Framing, req: &Value) -> Vec<u8> {
    let body = json!({"jsonrpc":"2.0","id":req["id"],"result":{"echo":req["params"]}});
    frame(framing, 2, &serde_json::to_vec(&body).unwrap())
}
