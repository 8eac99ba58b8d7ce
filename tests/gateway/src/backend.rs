//! One stdio MCP server child per client connection: writes each request as one line and
//! reads the child's stdout until the response with the same id. Everything else the child
//! writes (notifications, server→client requests, stray lines) is dropped, as the
//! mcp-bridge gateway never forwards it.

use crate::gojson;
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long the gateway waits for a backend answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A running (or failed-to-start) backend child.
pub struct Backend {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
    start_error: Option<String>,
}

impl Backend {
    /// Spawns `argv` with piped stdin/stdout and inherited stderr. A failure is kept and
    /// reported on every request.
    pub fn spawn(argv: &[String]) -> Backend {
        let failed = |e: String| Backend {
            child: None,
            stdin: None,
            stdout: None,
            start_error: Some(e),
        };
        let Some((program, args)) = argv.split_first() else {
            return failed("empty backend command".into());
        };
        let spawned = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn();
        match spawned {
            Ok(mut child) => Backend {
                stdin: child.stdin.take(),
                stdout: child.stdout.take().map(BufReader::new),
                child: Some(child),
                start_error: None,
            },
            Err(e) => failed(format!("failed to start backend process: {e}")),
        }
    }

    /// Forwards one client message. `Ok(None)` for a notification (nothing awaited);
    /// `Ok(Some(response))` for a request; `Err(cause)` when the child is gone or silent.
    pub async fn forward(&mut self, payload: &Value) -> Result<Option<Value>, String> {
        match tokio::time::timeout(ANSWER_TIMEOUT, self.exchange(payload)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "backend did not answer within {}s",
                ANSWER_TIMEOUT.as_secs()
            )),
        }
    }

    async fn exchange(&mut self, payload: &Value) -> Result<Option<Value>, String> {
        if let Some(e) = &self.start_error {
            return Err(e.clone());
        }
        let (Some(stdin), Some(stdout)) = (self.stdin.as_mut(), self.stdout.as_mut()) else {
            return Err("backend process exited".into());
        };
        let mut line = gojson::request(payload);
        line.push('\n');
        if let Err(e) = stdin.write_all(line.as_bytes()).await {
            return Err(format!("failed to write to backend process: {e}"));
        }
        if let Err(e) = stdin.flush().await {
            return Err(format!("failed to write to backend process: {e}"));
        }
        let Some(id) = payload.get("id") else {
            return Ok(None);
        };
        let wanted = gojson::marshal(id);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match stdout.read_until(b'\n', &mut buf).await {
                Ok(0) => return Err("backend process exited".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("failed to read from backend process: {e}")),
            }
            let Ok(msg) = serde_json::from_slice::<Value>(&buf) else {
                eprintln!("[gw] backend: dropped a non-JSON line");
                continue;
            };
            if is_response(&msg) && msg.get("id").map(gojson::marshal) == Some(wanted.clone()) {
                return Ok(Some(msg));
            }
            let what = msg
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("response");
            eprintln!("[gw] backend: dropped {what} (not the awaited reply)");
        }
    }

    /// Kills the child and waits for it.
    pub async fn shutdown(mut self) {
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

fn is_response(msg: &Value) -> bool {
    msg.get("method").is_none() && (msg.get("result").is_some() || msg.get("error").is_some())
}

/// The Go re-marshalled text of a backend response (`mcp.Response` shape).
pub fn response_text(resp: &Value) -> String {
    let jsonrpc = resp.get("jsonrpc").and_then(Value::as_str).unwrap_or("");
    gojson::response(
        jsonrpc,
        resp.get("result"),
        resp.get("error"),
        resp.get("id").unwrap_or(&Value::Null),
    )
}
