//! A system under test reached over WebSocket (tungstenite, blocking): one JSON-RPC message
//! per text frame, pipelined like stdio.

use std::net::TcpStream;

use anyhow::{bail, Context};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::transport::{pipeline, Make, Stream, Transport, NET_TIMEOUT};

pub struct Ws {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    pid: Option<u32>,
}

impl Ws {
    pub fn connect(url: &str, pid: Option<u32>) -> anyhow::Result<Self> {
        let mut req = url.into_client_request()?;
        req.headers_mut()
            .insert("sec-websocket-protocol", "mcp".parse()?);
        let (socket, _) =
            tungstenite::connect(req).with_context(|| format!("cannot connect to {url}"))?;
        if let MaybeTlsStream::Plain(s) = socket.get_ref() {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(NET_TIMEOUT))?;
        }
        Ok(Self { socket, pid })
    }

    fn recv_response(&mut self) -> anyhow::Result<String> {
        loop {
            match self.socket.read()? {
                Message::Text(t) if t.contains("\"id\"") && !t.contains("\"method\"") => {
                    return Ok(t.to_string())
                }
                Message::Close(_) => bail!("the server closed the WebSocket"),
                _ => {}
            }
        }
    }
}

impl Transport for Ws {
    fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn call(&mut self, line: &str) -> anyhow::Result<String> {
        self.socket.send(Message::text(line))?;
        self.recv_response()
    }

    fn notify(&mut self, line: &str) -> anyhow::Result<()> {
        self.socket.send(Message::text(line))?;
        Ok(())
    }

    fn pipeline(
        &mut self,
        make: &Make,
        first_id: u64,
        window: usize,
        total: usize,
    ) -> anyhow::Result<usize> {
        pipeline(self, make, first_id, window, total)
    }

    fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        let _ = self.socket.close(None);
        let _ = self.socket.flush();
        Ok(())
    }
}

impl Stream for Ws {
    fn write(&mut self, line: String) -> anyhow::Result<()> {
        Ok(self.socket.write(Message::text(line))?)
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.socket.flush()?)
    }

    fn read_response(&mut self) -> anyhow::Result<String> {
        self.recv_response()
    }
}
