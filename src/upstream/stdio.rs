//! A stdio MCP server: a child process speaking newline-delimited JSON-RPC.
//!
//! The supervisor owns the child for its whole life: spawn (own process group, so the
//! whole tree can be ended), replay the client's handshake on a fresh child, flush what
//! queued meanwhile, write the client's messages, restart with backoff when it exits, and
//! on shutdown close its stdin, give it a grace period, then end its process group. The
//! child's stdout is read by a separate task (so a child that stops reading its stdin can't
//! stop us reading its stdout); its stderr goes to our log tagged with the server name.
//! Ends when the shutdown token fires or the child can no longer be started.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{Fuse, FusedFuture, FutureExt};
use futures_util::StreamExt;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::{ReconnectPolicy, StdioCommand};
use crate::resilience::backoff::Backoff;
use crate::router::{Outgoing, Router, UpstreamDecision};
use crate::wire::{
    release_after_large, ErrorKind, Frame, Id, Kind, Message, NdjsonCodec, RouterError,
};

/// A child that stayed up this long has recovered: the backoff starts over.
const HEALTHY_UPTIME: Duration = Duration::from_secs(10);
/// After a child exits, how long its stdout may keep delivering buffered replies.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);
/// Between SIGTERM and SIGKILL to the process group.
const TERM_TO_KILL: Duration = Duration::from_millis(500);

/// The stdout reader task; fused so it can be awaited again after it ended.
type Reader = Fuse<tokio::task::JoinHandle<()>>;

/// Waits (bounded) for the reader to deliver what the child wrote before it went away.
async fn drain(reader: &mut Reader) {
    if !reader.is_terminated() {
        let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, reader).await;
    }
}

/// Everything a stdio supervisor needs.
pub struct StdioUpstream {
    pub name: String,
    pub command: StdioCommand,
    pub reconnect: ReconnectPolicy,
    pub max_message_size: usize,
    pub write_buffer_size: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// Channels and shared state the supervisor works with.
pub struct Links {
    pub router: Arc<Router>,
    pub from_router: mpsc::Receiver<Outgoing>,
    pub to_client: mpsc::Sender<Bytes>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

/// How one incarnation of the child ended.
enum End {
    Shutdown,
    Exited(String),
}

impl StdioUpstream {
    /// Runs the supervisor until shutdown or until the child can no longer be started.
    pub async fn run(self, mut links: Links) {
        let mut backoff = Backoff::new(self.reconnect.clone());
        loop {
            let started = Instant::now();
            let end = match self.spawn() {
                Ok(child) => self.incarnation(child, &mut links).await,
                Err(err) => {
                    let permanent = matches!(
                        err.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                    );
                    let text = self.spawn_error_text(&err);
                    if permanent {
                        super::give_up(&links, text).await;
                        return;
                    }
                    tracing::error!(upstream = %self.name, "{text}");
                    End::Exited(text)
                }
            };
            let reason = match end {
                End::Shutdown => return,
                End::Exited(reason) => reason,
            };
            if started.elapsed() >= HEALTHY_UPTIME {
                backoff.reset();
            }
            let Some(delay) = backoff.next_delay(rand::random::<f64>()) else {
                let text = format!(
                    "server '{}' could not be kept running: {reason}; gave up after {} restarts (reconnect.max_attempts)",
                    self.name,
                    backoff.failures().saturating_sub(1)
                );
                super::give_up(&links, text).await;
                return;
            };
            tracing::info!(upstream = %self.name, delay_ms = delay.as_millis() as u64, attempt = backoff.failures(), "restarting server");
            tokio::select! {
                _ = links.shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn spawn(&self) -> std::io::Result<Child> {
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
        let child = cmd.spawn()?;
        tracing::info!(upstream = %self.name, pid = child.id(), program = %self.command.program, "server started");
        Ok(child)
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

    /// One child, from spawn to exit.
    async fn incarnation(&self, mut child: Child, links: &mut Links) -> End {
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return End::Exited("child process has no stdio pipes".into());
        };
        let name = self.name.clone();
        links.tracker.spawn(
            log_stderr(stderr, self.max_message_size)
                .instrument(tracing::info_span!("stderr", upstream = %name)),
        );
        let mut stdin = BufWriter::with_capacity(self.write_buffer_size, stdin);
        let replay = links.router.handshake();
        let (replay_tx, replay_rx) = oneshot::channel();
        let replay_id = replay
            .as_ref()
            .map(|_| Id::router_owned(&format!("mcp-router-replay-{}", pid.unwrap_or(0))));
        let mut reader = links
            .tracker
            .spawn(
                read_stdout(
                    stdout,
                    links.router.clone(),
                    links.to_client.clone(),
                    self.max_message_size,
                    replay_id.clone().map(|id| (id, replay_tx)),
                )
                .instrument(tracing::info_span!("stdout", upstream = %name)),
            )
            .fuse();

        if let (Some(hs), Some(id)) = (replay, replay_id) {
            let init = hs.initialize.with_id(&id);
            let done = async {
                write_line(&mut stdin, init.raw()).await?;
                stdin.flush().await?;
                match tokio::time::timeout(self.request_timeout, replay_rx).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(e))) => {
                        return Err(std::io::Error::other(format!(
                            "the server refused the replayed initialize: {e}"
                        )))
                    }
                    _ => {
                        return Err(std::io::Error::other(
                            "no answer to the replayed initialize",
                        ))
                    }
                }
                if let Some(initialized) = &hs.initialized {
                    write_line(&mut stdin, initialized.raw()).await?;
                }
                Ok::<(), std::io::Error>(())
            };
            let outcome = tokio::select! {
                r = done => r,
                _ = links.shutdown.cancelled() => {
                    self.stop(child, stdin, reader).await;
                    return End::Shutdown;
                }
            };
            if let Err(e) = outcome {
                tracing::warn!(upstream = %self.name, "session replay failed: {e}");
                self.stop(child, stdin, reader).await;
                return End::Exited(format!("session replay failed: {e}"));
            }
            tracing::info!(upstream = %self.name, "client session replayed on the new server process");
        }

        let (gen, queued) = links.router.upstream_up();
        let mut write_result = async {
            for msg in &queued {
                write_line(&mut stdin, msg.raw()).await?;
            }
            stdin.flush().await
        }
        .await;

        let end = loop {
            if let Err(e) = &write_result {
                tracing::debug!(upstream = %self.name, "write to server failed: {e}");
                break self.wait_exit(&mut child, &mut reader).await;
            }
            tokio::select! {
                _ = links.shutdown.cancelled() => {
                    self.stop(child, stdin, reader).await;
                    return End::Shutdown;
                }
                status = child.wait() => {
                    drain(&mut reader).await;
                    break describe_exit(status);
                }
                _ = &mut reader, if !reader.is_terminated() => {
                    // stdout closed while the process lives on: it can no longer answer.
                    break self.wait_exit(&mut child, &mut reader).await;
                }
                out = links.from_router.recv() => {
                    let Some(out) = out else {
                        self.stop(child, stdin, reader).await;
                        return End::Shutdown;
                    };
                    // A child that stops reading must not make us deaf to shutdown.
                    let written = tokio::select! {
                        r = self.write_batch(&mut stdin, out, gen, &mut links.from_router) => Some(r),
                        _ = links.shutdown.cancelled() => None,
                    };
                    match written {
                        Some(r) => write_result = r,
                        None => {
                            self.stop(child, stdin, reader).await;
                            return End::Shutdown;
                        }
                    }
                }
            }
        };
        kill_group(pid, Signal::SIGKILL);
        let reason = format!("server '{}' {end}", self.name);
        tracing::warn!(upstream = %self.name, "{reason}");
        let err = RouterError::new(
            ErrorKind::UpstreamExited,
            format!("{reason} before answering this request; it will be restarted"),
        );
        for reply in links.router.upstream_down(&err) {
            if links.to_client.send(reply).await.is_err() {
                break;
            }
        }
        End::Exited(end)
    }

    /// Writes `first` and whatever else is already waiting, then flushes once.
    async fn write_batch(
        &self,
        stdin: &mut BufWriter<ChildStdin>,
        first: Outgoing,
        gen: u64,
        rx: &mut mpsc::Receiver<Outgoing>,
    ) -> std::io::Result<()> {
        let mut next = Some(first);
        while let Some(out) = next {
            // Stamped for an incarnation that died: it was already answered with an error.
            if out.gen == gen {
                write_line(stdin, out.msg.raw()).await?;
            }
            next = rx.try_recv().ok();
        }
        stdin.flush().await
    }

    async fn wait_exit(&self, child: &mut Child, reader: &mut Reader) -> String {
        kill_group(child.id(), Signal::SIGTERM);
        let status = tokio::time::timeout(TERM_TO_KILL, child.wait()).await;
        drain(reader).await;
        match status {
            Ok(status) => describe_exit(status),
            Err(_) => {
                kill_group(child.id(), Signal::SIGKILL);
                describe_exit(child.wait().await)
            }
        }
    }

    /// Graceful stop: close stdin, wait the grace period, then end the process group.
    async fn stop(&self, mut child: Child, mut stdin: BufWriter<ChildStdin>, mut reader: Reader) {
        let pid = child.id();
        // Bounded: a child that stopped reading would otherwise hold shutdown forever.
        let _ = tokio::time::timeout(self.shutdown_grace, stdin.flush()).await;
        drop(stdin);
        let exited = tokio::time::timeout(self.shutdown_grace, child.wait()).await;
        match exited {
            Ok(status) => {
                tracing::info!(upstream = %self.name, "server {} after its stdin was closed", describe_exit(status));
                // The leader is gone; anything it left in its group goes too.
                kill_group(pid, Signal::SIGTERM);
            }
            Err(_) => {
                tracing::warn!(upstream = %self.name, grace_ms = self.shutdown_grace.as_millis() as u64, "server did not exit after its stdin was closed; terminating its process group");
                kill_group(pid, Signal::SIGTERM);
                if tokio::time::timeout(TERM_TO_KILL, child.wait())
                    .await
                    .is_err()
                {
                    kill_group(pid, Signal::SIGKILL);
                    let _ = child.wait().await;
                }
            }
        }
        drain(&mut reader).await;
    }
}

async fn write_line(w: &mut BufWriter<ChildStdin>, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.write_all(b"\n").await
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

/// Reads the child's stdout until EOF: each message goes through the router to the client.
/// Read buffer for the server's stdout.
const READ_BUFFER: usize = 64 * 1024;

async fn read_stdout(
    stdout: ChildStdout,
    router: Arc<Router>,
    to_client: mpsc::Sender<Bytes>,
    max: usize,
    mut replay: Option<(Id, oneshot::Sender<Result<(), String>>)>,
) {
    let mut frames = FramedRead::with_capacity(stdout, NdjsonCodec::new(max), READ_BUFFER);
    while let Some(frame) = frames.next().await {
        if let Ok(Frame::Line(bytes)) = &frame {
            release_after_large(frames.read_buffer_mut(), bytes.len(), READ_BUFFER);
        }
        let deliver = match frame {
            Ok(Frame::Line(bytes)) => match Message::parse(bytes) {
                Ok(msg) => {
                    if let Some((id, _)) = &replay {
                        if msg.kind() == Kind::Response && msg.id() == Some(id) {
                            if let Some((_, tx)) = replay.take() {
                                let _ = tx.send(super::replay_outcome(&msg));
                            }
                            continue;
                        }
                    }
                    match router.from_upstream(msg) {
                        UpstreamDecision::Deliver(b) => Some(b),
                        UpstreamDecision::Drop => None,
                    }
                }
                Err(e) => {
                    tracing::warn!(upstream = %router.upstream_name(), "server wrote something that is not a JSON-RPC message on stdout (ignored): {e}");
                    None
                }
            },
            Ok(Frame::Oversized { id, len }) => {
                tracing::warn!(upstream = %router.upstream_name(), len, "server sent a message over the size limit");
                router.upstream_oversized(id.as_ref(), len, max)
            }
            Err(e) => {
                tracing::warn!(upstream = %router.upstream_name(), "reading server stdout failed: {e}");
                break;
            }
        };
        if let Some(bytes) = deliver {
            if to_client.send(bytes).await.is_err() {
                break;
            }
        }
    }
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
