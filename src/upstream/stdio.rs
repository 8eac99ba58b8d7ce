//! A stdio MCP server: a child process speaking newline-delimited JSON-RPC.
//!
//! The connector starts one child per incarnation (its own process group, so the whole
//! tree can be ended); the supervisor does the rest (replay, pull-and-write, restart with
//! backoff). The writer owns the child's stdin; a waiter task owns the child and reports
//! its exit; the reader owns its stdout and, when the child goes away, lets it deliver
//! what it still wrote for a moment, then says how it ended. Stderr goes to our log tagged
//! with the server's name. Shutdown: close stdin, grace period, SIGTERM the group, SIGKILL.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::watch;
use tokio_util::codec::FramedRead;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::supervisor::{ConnectError, Inbound, SendError};
use crate::config::StdioCommand;
use crate::wire::{release_after_large, Frame, Message, NdjsonCodec};

/// After a child exits, how long its stdout may keep delivering buffered replies.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);
/// Between SIGTERM and SIGKILL to the process group.
const TERM_TO_KILL: Duration = Duration::from_millis(500);
/// Read buffer for the server's stdout.
const READ_BUFFER: usize = 64 * 1024;

/// How to start the server.
pub struct Connector {
    pub name: String,
    pub command: StdioCommand,
    pub max_message_size: usize,
    pub write_buffer_size: usize,
    pub shutdown_grace: Duration,
}

/// `None` while the child runs; then how it ended.
type Exit = watch::Receiver<Option<String>>;

pub struct Writer {
    name: String,
    stdin: BufWriter<ChildStdin>,
    pid: Option<u32>,
    exit: Exit,
    grace: Duration,
}

pub struct Reader {
    name: String,
    frames: FramedRead<ChildStdout, NdjsonCodec>,
    pid: Option<u32>,
    exit: Exit,
    max: usize,
    /// Once the child exited: until when its stdout may still deliver.
    drain_until: Option<tokio::time::Instant>,
}

impl Connector {
    pub(crate) fn connect(&self, tracker: &TaskTracker) -> Result<(Writer, Reader), ConnectError> {
        let mut cmd = Command::new(&self.command.program);
        cmd.args(&self.command.args)
            .envs(&self.command.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: signals from a terminal don't reach it behind our
            // back, and shutdown can end the whole tree (npx → node, sh → python …).
            .process_group(0)
            .kill_on_drop(true);
        if let Some(cwd) = &self.command.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn().map_err(|err| {
            let text = self.spawn_error_text(&err);
            match err.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    ConnectError::Permanent(text)
                }
                _ => {
                    tracing::error!(upstream = %self.name, "{text}");
                    ConnectError::Retry(text)
                }
            }
        })?;
        let pid = child.id();
        tracing::info!(upstream = %self.name, pid, program = %self.command.program, "server started");
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ConnectError::Retry(
                "child process has no stdio pipes".into(),
            ));
        };
        let span = || tracing::info_span!("stderr", upstream = %self.name);
        tracker.spawn(log_stderr(stderr, self.max_message_size).instrument(span()));
        let (exit_tx, exit) = watch::channel(None);
        tracker.spawn(
            async move {
                let status = child.wait().await;
                let _ = exit_tx.send(Some(describe_exit(status)));
            }
            .instrument(tracing::info_span!("child", upstream = %self.name)),
        );
        let writer = Writer {
            name: self.name.clone(),
            stdin: BufWriter::with_capacity(self.write_buffer_size, stdin),
            pid,
            exit: exit.clone(),
            grace: self.shutdown_grace,
        };
        let reader = Reader {
            name: self.name.clone(),
            frames: FramedRead::with_capacity(
                stdout,
                NdjsonCodec::new(self.max_message_size),
                READ_BUFFER,
            ),
            pid,
            exit,
            max: self.max_message_size,
            drain_until: None,
        };
        Ok((writer, reader))
    }

    fn spawn_error_text(&self, err: &std::io::Error) -> String {
        let hint = match err.kind() {
            std::io::ErrorKind::NotFound => match &self.command.cwd {
                Some(cwd) if !cwd.is_dir() => {
                    format!(" (working directory '{}' does not exist)", cwd.display())
                }
                _ => " (is it installed and on PATH? check the server's command)".to_owned(),
            },
            std::io::ErrorKind::PermissionDenied => " (is the file executable?)".to_owned(),
            _ => String::new(),
        };
        format!(
            "cannot start server '{}': '{}': {err}{hint}",
            self.name, self.command.program
        )
    }
}

impl Writer {
    pub(crate) async fn feed(&mut self, msg: Message) -> Result<(), SendError> {
        let broken = |e: std::io::Error| SendError::Broken(e.to_string());
        self.stdin.write_all(msg.raw()).await.map_err(broken)?;
        self.stdin.write_all(b"\n").await.map_err(broken)
    }

    pub(crate) async fn flush(&mut self) -> Result<(), String> {
        self.stdin.flush().await.map_err(|e| e.to_string())
    }

    /// Graceful stop: close stdin, wait the grace period, then end the process group.
    pub(crate) async fn close(self) {
        let Writer {
            name,
            mut stdin,
            pid,
            mut exit,
            grace,
        } = self;
        // Bounded: a child that stopped reading would otherwise hold shutdown forever.
        let _ = tokio::time::timeout(grace, stdin.flush()).await;
        drop(stdin);
        match tokio::time::timeout(grace, wait_exit(&mut exit)).await {
            Ok(how) => {
                tracing::info!(upstream = %name, "server {how} after its stdin was closed");
                // The leader is gone; anything it left in its group goes too.
                kill_group(pid, Signal::SIGTERM);
            }
            Err(_) => {
                tracing::warn!(upstream = %name, grace_ms = grace.as_millis() as u64, "server did not exit after its stdin was closed; terminating its process group");
                kill_group(pid, Signal::SIGTERM);
                if tokio::time::timeout(TERM_TO_KILL, wait_exit(&mut exit))
                    .await
                    .is_err()
                {
                    kill_group(pid, Signal::SIGKILL);
                    let _ = wait_exit(&mut exit).await;
                }
            }
        }
    }

    /// The incarnation is over: nothing of its process group may linger.
    pub(crate) fn discard(self) {
        kill_group(self.pid, Signal::SIGKILL);
    }
}

/// Resolves with how the child ended.
async fn wait_exit(exit: &mut Exit) -> String {
    match exit.wait_for(Option::is_some).await {
        Ok(how) => how.clone().unwrap_or_default(),
        Err(_) => "ended".to_owned(),
    }
}

impl Reader {
    pub(crate) async fn next(&mut self) -> Inbound {
        loop {
            // Biased: stdout first (the hot path; no fairness draw per message).
            let frame = tokio::select! {
                biased;
                f = self.frames.next() => f,
                _ = self.exit.changed(), if self.drain_until.is_none() => {
                    self.drain_until = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                    continue;
                }
                _ = sleep_until(self.drain_until), if self.drain_until.is_some() => {
                    return self.ended().await;
                }
            };
            match frame {
                Some(Ok(Frame::Line(bytes))) => {
                    release_after_large(self.frames.read_buffer_mut(), bytes.len(), READ_BUFFER);
                    match Message::parse(bytes) {
                        Ok(msg) => return Inbound::Message(msg),
                        Err(e) => {
                            tracing::warn!(upstream = %self.name, "server wrote something that is not a JSON-RPC message on stdout (ignored): {e}")
                        }
                    }
                }
                Some(Ok(Frame::Oversized { id, len })) => {
                    return Inbound::Oversized {
                        id,
                        len,
                        limit: self.max,
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(upstream = %self.name, "reading server stdout failed: {e}");
                    return self.ended().await;
                }
                None => return self.ended().await,
            }
        }
    }

    /// Stdout is closed (or the drain after exit is over): make sure the process is gone
    /// and say how it ended.
    async fn ended(&mut self) -> Inbound {
        // A child that closed stdout is usually exiting: give it a moment to say how.
        let settled =
            tokio::time::timeout(Duration::from_millis(100), wait_exit(&mut self.exit)).await;
        let how = match settled.ok() {
            Some(how) => how,
            None => {
                // Stdout closed while the process lives on: it can no longer answer.
                kill_group(self.pid, Signal::SIGTERM);
                match tokio::time::timeout(TERM_TO_KILL, wait_exit(&mut self.exit)).await {
                    Ok(how) => how,
                    Err(_) => {
                        kill_group(self.pid, Signal::SIGKILL);
                        wait_exit(&mut self.exit).await
                    }
                }
            }
        };
        Inbound::Ended(format!("server '{}' {how}", self.name))
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn describe_exit(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => format!("exited ({s})"),
        },
        Err(e) => format!("could not be waited for: {e}"),
    }
}

fn kill_group(pid: Option<u32>, signal: Signal) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    // ESRCH (already gone) is the common, fine case.
    let _ = killpg(Pid::from_raw(pid), signal);
}

/// Logs the child's stderr line by line, tagged with the server's name (the span).
async fn log_stderr(stderr: tokio::process::ChildStderr, max: usize) {
    let mut frames = FramedRead::new(stderr, NdjsonCodec::new(max.min(64 * 1024)));
    while let Some(frame) = frames.next().await {
        match frame {
            Ok(Frame::Line(line)) => {
                tracing::info!(target: "mcp_router::server_stderr", "{}", String::from_utf8_lossy(&line));
            }
            Ok(Frame::Oversized { len, .. }) => {
                tracing::info!(target: "mcp_router::server_stderr", "({len} bytes of stderr output in one line, not shown)");
            }
            Err(_) => break,
        }
    }
}
