//! The one supervisor loop for every connection-shaped upstream (stdio child, WebSocket,
//! legacy SSE, TCP binary, the gateway): pace, connect, replay the client's handshake,
//! go up, pull-and-write with keepalive, notice the loss, fail what the connection
//! carried, go again — or give up.
//!
//! Transports differ only in their [`Connector`] (how to open one connection) and the
//! [`Writer`]/[`Reader`] halves it returns; everything else is here once. Every await on
//! a peer (connect, replay, write, ping, close) is raced against shutdown or bounded, so
//! a peer that stops reading cannot hold the router. The reader half runs as its own task
//! on the tracker (a peer that stops reading must never stop us reading it). Owns no
//! routing decisions: those are the core's, reached through the [`Port`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::Instrument;

use super::reconnect::Pacing;
use super::{gateway, sse, stdio, ws};
use crate::config::ReconnectPolicy;
use crate::router::{Conn, Handshake, Port};
use crate::wire::{ErrorKind, Id, Kind, Message, RouterError};

/// Messages written per pull before one flush.
const BATCH: usize = 64;
/// After shutdown closed the writer, how long the reader may still deliver replies.
const DRAIN_AFTER_CLOSE: Duration = Duration::from_secs(1);
/// After a write failed, how long the reader may take to say why the peer went away.
const REASON_AFTER_WRITE_ERROR: Duration = Duration::from_millis(1500);

/// How to open one connection (or start one process) of an upstream.
pub(crate) enum Connector {
    Stdio(stdio::Connector),
    Ws(ws::Connector),
    Sse(sse::Connector),
    Gateway(Box<gateway::Connector>),
}

/// Why a connection attempt failed.
pub(crate) enum ConnectError {
    /// Worth trying again after the backoff delay.
    Retry(String),
    /// Will never work (the program does not exist): give up now.
    Permanent(String),
}

/// Why one message could not be written.
pub(crate) enum SendError {
    /// Only these requests cannot go (too large, not carried): answer them, keep going.
    Refused { ids: Vec<Id>, error: RouterError },
    /// The connection is broken.
    Broken(String),
}

/// What a connection's reader produced.
pub(crate) enum Inbound {
    Message(Message),
    /// A message over the size limit; its id, if it could be read.
    Oversized {
        id: Option<Id>,
        len: usize,
        limit: usize,
    },
    /// The peer answered a keepalive.
    Pong,
    /// The connection ended; the sentence says why ("server 'x' exited with status 1").
    Ended(String),
}

/// The writing half of one connection.
pub(crate) enum Writer {
    Stdio(stdio::Writer),
    Ws(ws::Writer),
    Sse(sse::Writer),
    Gateway(Box<gateway::Writer>),
}

/// The reading half of one connection.
pub(crate) enum Reader {
    Stdio(stdio::Reader),
    Ws(ws::Reader),
    Sse(sse::Reader),
    Gateway(gateway::Reader),
}

/// When a keepalive that got no answer means the connection is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enforce {
    /// Always (a WebSocket peer must answer pings: RFC 6455).
    Always,
    /// Only while nothing is in flight (a peer that handles one message at a time reads
    /// no ping during a long call; the call's own timeout covers that time).
    WhenIdle,
    /// Only once the peer has answered one, and while idle (some peers never answer).
    WhenIdleAfterFirstPong,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Keepalive {
    pub every: Duration,
    /// How long an answer may take.
    pub deadline: Duration,
    pub enforce: Enforce,
}

impl Connector {
    async fn connect(
        &mut self,
        port: &Port,
        tracker: &TaskTracker,
    ) -> Result<(Writer, Reader), ConnectError> {
        match self {
            Connector::Stdio(c) => c
                .connect(tracker)
                .map(|(w, r)| (Writer::Stdio(w), Reader::Stdio(r))),
            Connector::Ws(c) => c
                .connect()
                .await
                .map(|(w, r)| (Writer::Ws(w), Reader::Ws(r))),
            Connector::Sse(c) => c
                .connect()
                .await
                .map(|(w, r)| (Writer::Sse(w), Reader::Sse(r))),
            Connector::Gateway(c) => c
                .connect(port, tracker)
                .await
                .map(|(w, r)| (Writer::Gateway(Box::new(w)), Reader::Gateway(r))),
        }
    }

    fn keepalive(&self) -> Option<Keepalive> {
        match self {
            Connector::Stdio(_) | Connector::Sse(_) => None,
            Connector::Ws(c) => Some(c.keepalive()),
            Connector::Gateway(c) => Some(c.keepalive()),
        }
    }

    /// A child process restarts; a connection reconnects (the words users see differ).
    fn is_process(&self) -> bool {
        matches!(self, Connector::Stdio(_))
    }

    /// What a new connection is called in "client session replayed on the new …".
    fn noun(&self) -> &'static str {
        match self {
            Connector::Stdio(_) => "server process",
            Connector::Sse(_) => "SSE session",
            Connector::Ws(_) | Connector::Gateway(_) => "connection",
        }
    }
}

impl Writer {
    async fn feed(&mut self, msg: Message) -> Result<(), SendError> {
        match self {
            Writer::Stdio(w) => w.feed(msg).await,
            Writer::Ws(w) => w.feed(msg).await,
            Writer::Sse(w) => w.feed(msg).await,
            Writer::Gateway(w) => w.feed(msg).await,
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        match self {
            Writer::Stdio(w) => w.flush().await,
            Writer::Ws(w) => w.flush().await,
            Writer::Sse(_) => Ok(()),
            Writer::Gateway(w) => w.flush().await,
        }
    }

    async fn ping(&mut self) -> Result<(), String> {
        match self {
            Writer::Stdio(_) | Writer::Sse(_) => Ok(()),
            Writer::Ws(w) => w.ping().await,
            Writer::Gateway(w) => w.ping().await,
        }
    }

    /// Graceful end at shutdown; bounded however the peer behaves.
    async fn close(self) {
        match self {
            Writer::Stdio(w) => w.close().await,
            Writer::Ws(w) => w.close().await,
            Writer::Sse(_) => {}
            Writer::Gateway(w) => w.close().await,
        }
    }

    /// The connection is lost: make sure nothing of it lingers (a child is killed).
    fn discard(self) {
        if let Writer::Stdio(w) = self {
            w.discard();
        }
    }

    /// Feeds one message, answering the requests it cannot carry; errors only when the
    /// connection is broken.
    async fn feed_or_refuse(&mut self, msg: Message, port: &Port) -> Result<(), String> {
        match self.feed(msg).await {
            Ok(()) => Ok(()),
            Err(SendError::Broken(e)) => Err(e),
            Err(SendError::Refused { ids, error }) => {
                tracing::warn!(upstream = %port.name(), "{}", error.message);
                for id in &ids {
                    port.fail_request(id, &error).await;
                }
                Ok(())
            }
        }
    }
}

impl Reader {
    async fn next(&mut self) -> Inbound {
        match self {
            Reader::Stdio(r) => r.next().await,
            Reader::Ws(r) => r.next().await,
            Reader::Sse(r) => r.next().await,
            Reader::Gateway(r) => r.next().await,
        }
    }
}

/// What the reader task has heard, for the keepalive check.
#[derive(Default)]
struct Liveness {
    /// Milliseconds since `start` when anything last arrived.
    heard_ms: AtomicU64,
    pong_seen: AtomicBool,
}

impl Liveness {
    fn heard(&self, start: Instant) {
        self.heard_ms
            .store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// How one connection ended.
enum End {
    Shutdown,
    Lost(String),
    /// Retired by its pool (closed once idle).
    Retired,
    /// Past its pool's `max_lifetime`: closed once idle, replaced at once.
    Renew,
}

/// One connection of a pool (`upstream::pool` drives these).
#[derive(Clone)]
pub(crate) struct Slot {
    /// Cancelled when the pool shrinks: the connection drains, closes and is not replaced.
    pub retire: CancellationToken,
    /// Renewed (drained, closed, opened again) once this old.
    pub max_lifetime: Duration,
    /// Opened for load: once lost it is not reopened (the pool decides again).
    pub extra: bool,
    /// The live connection's generation (`u64::MAX`: none), for the pool to name it.
    pub gen: Arc<AtomicU64>,
}

/// Runs one upstream (or one pool connection of it) until shutdown or until it can no
/// longer be reached.
pub(crate) struct Supervisor {
    pub port: Port,
    pub reconnect: ReconnectPolicy,
    /// How long a replayed `initialize` may take to be answered.
    pub replay_timeout: Duration,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub slot: Option<Slot>,
}

/// While a retired connection drains, how often to look whether it is idle.
const DRAIN_CHECK: Duration = Duration::from_millis(50);

impl Supervisor {
    pub(crate) async fn run(self, mut connector: Connector) {
        let mut pacing = Pacing::new(self.port.name(), &self.reconnect, connector.is_process());
        let retire = self
            .slot
            .as_ref()
            .map(|s| s.retire.clone())
            .unwrap_or_default();
        loop {
            let started = Instant::now();
            let attempt = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = retire.cancelled() => return,
                c = connector.connect(&self.port, &self.tracker) => c,
            };
            let reason = match attempt {
                Err(ConnectError::Permanent(text)) => {
                    self.port.give_up(text).await;
                    return;
                }
                Err(ConnectError::Retry(text)) => {
                    self.port.connect_failed();
                    text
                }
                Ok((writer, reader)) => match self.connection(&connector, writer, reader).await {
                    End::Shutdown | End::Retired => return,
                    End::Renew => continue,
                    End::Lost(_) if self.slot.as_ref().is_some_and(|s| s.extra) => return,
                    End::Lost(reason) => reason,
                },
            };
            if self.slot.as_ref().is_some_and(|s| s.extra) {
                // A connection opened for load that cannot be opened: the pool decides.
                return;
            }
            if !pacing
                .wait(started, &reason, &self.port, &self.shutdown)
                .await
            {
                return;
            }
        }
    }

    /// One connection, from connect to loss.
    async fn connection(
        &self,
        connector: &Connector,
        mut writer: Writer,
        mut reader: Reader,
    ) -> End {
        let port = &self.port;
        if let Some(hs) = port.handshake() {
            let replay = tokio::select! {
                r = self.replay(&mut writer, &mut reader, hs) => r,
                _ = self.shutdown.cancelled() => {
                    writer.close().await;
                    return End::Shutdown;
                }
            };
            match replay {
                Ok(()) => {
                    tracing::info!(upstream = %port.name(), "client session replayed on the new {}", connector.noun())
                }
                Err(e) => {
                    tracing::warn!(upstream = %port.name(), "session replay failed: {e}");
                    writer.discard();
                    return End::Lost(format!("session replay failed: {e}"));
                }
            }
        }
        let conn = port.connected();
        if let Some(s) = &self.slot {
            s.gen.store(conn.gen(), Ordering::Relaxed);
        }
        let start = Instant::now();
        let retire = self
            .slot
            .as_ref()
            .map(|s| s.retire.clone())
            .unwrap_or_default();
        let renew_at = self.slot.as_ref().map(|s| start + s.max_lifetime);
        // Set once retired or past its lifetime: no new requests; closed once idle.
        let mut draining: Option<End> = None;
        let liveness = Arc::new(Liveness::default());
        // Aborted when dropped: a reader never outlives its connection.
        let mut reader_task = AbortOnDropHandle::new(
            self.tracker.spawn(
                read_loop(reader, port.clone(), conn.clone(), liveness.clone(), start)
                    .instrument(tracing::info_span!("upstream_reader", upstream = %port.name())),
            ),
        )
        .fuse();
        let keepalive = connector.keepalive();
        let every = keepalive.map_or(Duration::from_secs(3600), |k| k.every);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        // The oldest unanswered ping, and the newest one sent.
        let mut ping_at: Option<Instant> = None;
        let mut last_ping: Option<Instant> = None;
        let mut batch = Vec::with_capacity(BATCH);
        let reason = loop {
            if draining.is_some() && !port.busy(&conn) {
                let end = draining.take().unwrap_or(End::Retired);
                writer.close().await;
                drop(reader_task);
                let err =
                    RouterError::new(ErrorKind::UpstreamExited, "the pool closed this connection");
                port.lost(&conn, &err).await;
                tracing::debug!(upstream = %port.name(), gen = conn.gen(), "pool connection closed");
                return end;
            }
            batch.clear();
            if !port.pull(&conn, &mut batch, BATCH) {
                if port.renew_due(&conn) {
                    // Opened before the client's session existed: opened again, which
                    // replays it (nothing is in flight on it).
                    draining = Some(End::Renew);
                    continue;
                }
                break "the connection was superseded".to_owned();
            }
            if !batch.is_empty() {
                let written = tokio::select! {
                    biased;
                    r = write_batch(&mut writer, &mut batch, port) => r,
                    _ = self.shutdown.cancelled() => {
                        return self.shut(writer, reader_task).await;
                    }
                };
                if let Err(e) = written {
                    break self
                        .after_write_error(e, &mut writer, &mut reader_task)
                        .await;
                }
                continue;
            }
            let deadline = ping_at.zip(keepalive).map(|(at, k)| at + k.deadline);
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return self.shut(writer, reader_task).await,
                r = &mut reader_task => break r.unwrap_or_else(|_| format!("server '{}': the connection reader stopped", port.name())),
                _ = conn.ready() => {}
                _ = retire.cancelled(), if draining.is_none() => {
                    port.drain(&conn);
                    draining = Some(End::Retired);
                }
                _ = sleep_until(renew_at), if draining.is_none() && renew_at.is_some() => {
                    port.drain(&conn);
                    draining = Some(End::Renew);
                }
                _ = tokio::time::sleep(DRAIN_CHECK), if draining.is_some() => {}
                _ = tick.tick(), if keepalive.is_some() => {
                    let sent = tokio::select! {
                        r = writer.ping() => r,
                        _ = self.shutdown.cancelled() => return self.shut(writer, reader_task).await,
                    };
                    if let Err(e) = sent {
                        break self.after_write_error(e, &mut writer, &mut reader_task).await;
                    }
                    let now = Instant::now();
                    ping_at.get_or_insert(now);
                    last_ping = Some(now);
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    let (Some(at), Some(k)) = (ping_at.take(), keepalive) else { continue };
                    let heard = Duration::from_millis(liveness.heard_ms.load(Ordering::Relaxed));
                    let answered = start + heard >= at;
                    let enforced = match k.enforce {
                        Enforce::Always => true,
                        Enforce::WhenIdle => !port.busy(&conn),
                        Enforce::WhenIdleAfterFirstPong => liveness.pong_seen.load(Ordering::Relaxed) && !port.busy(&conn),
                    };
                    if !answered && enforced {
                        break format!("server '{}' did not answer a keepalive within {:?}; the connection is treated as lost", port.name(), k.deadline);
                    }
                    // A ping sent after the one just checked is now the one to watch.
                    ping_at = last_ping.filter(|p| *p > at && start + heard < *p);
                }
            }
        };
        writer.discard();
        let reason = reason.to_owned();
        let err = RouterError::new(
            ErrorKind::UpstreamExited,
            if connector.is_process() {
                format!("{reason} before answering this request; it will be restarted")
            } else {
                format!("{reason} before answering this request; reconnecting")
            },
        );
        tracing::warn!(upstream = %port.name(), "{reason}");
        port.lost(&conn, &err).await;
        End::Lost(reason)
    }

    /// A write failed: the reader usually knows better why (the child exited with …).
    async fn after_write_error(
        &self,
        e: String,
        _writer: &mut Writer,
        reader_task: &mut ReaderTask,
    ) -> String {
        tracing::debug!(upstream = %self.port.name(), "write failed: {e}");
        match tokio::time::timeout(REASON_AFTER_WRITE_ERROR, reader_task).await {
            Ok(Ok(why)) => why,
            _ => format!("writing to server '{}' failed: {e}", self.port.name()),
        }
    }

    async fn shut(&self, writer: Writer, mut reader_task: ReaderTask) -> End {
        writer.close().await;
        let _ = tokio::time::timeout(DRAIN_AFTER_CLOSE, &mut reader_task).await;
        End::Shutdown
    }

    /// The client's `initialize` under a router-owned id, its reply swallowed, then
    /// `notifications/initialized`. Whatever else arrives meanwhile is dropped: the client
    /// has no requests on this connection yet.
    async fn replay(
        &self,
        writer: &mut Writer,
        reader: &mut Reader,
        hs: Handshake,
    ) -> Result<(), String> {
        let id = self.port.fresh_id("replay");
        feed_all(writer, hs.initialize.with_id(&id)).await?;
        writer.flush().await?;
        let wait = async {
            loop {
                match reader.next().await {
                    Inbound::Message(msg)
                        if msg.kind() == Kind::Response && msg.id() == Some(&id) =>
                    {
                        return super::replay_outcome(&msg).map_err(|e| {
                            format!("the server refused the replayed initialize: {e}")
                        });
                    }
                    Inbound::Ended(why) => return Err(format!("{why} during the replay")),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(self.replay_timeout, wait)
            .await
            .map_err(|_| "no answer to the replayed initialize".to_owned())??;
        if let Some(initialized) = hs.initialized {
            feed_all(writer, initialized).await?;
            writer.flush().await?;
        }
        Ok(())
    }
}

type ReaderTask = futures_util::future::Fuse<AbortOnDropHandle<String>>;

async fn feed_all(writer: &mut Writer, msg: Message) -> Result<(), String> {
    writer.feed(msg).await.map_err(|e| match e {
        SendError::Broken(t) => t,
        SendError::Refused { error, .. } => error.message.clone(),
    })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn write_batch(
    writer: &mut Writer,
    batch: &mut Vec<Message>,
    port: &Port,
) -> Result<(), String> {
    for msg in batch.drain(..) {
        writer.feed_or_refuse(msg, port).await?;
    }
    writer.flush().await
}

/// Reads until the connection ends; every message goes to the core. Returns why it ended.
async fn read_loop(
    mut reader: Reader,
    port: Port,
    conn: Conn,
    liveness: Arc<Liveness>,
    start: Instant,
) -> String {
    loop {
        match reader.next().await {
            Inbound::Message(msg) => {
                liveness.heard(start);
                port.deliver(&conn, msg).await;
            }
            Inbound::Oversized { id, len, limit } => {
                liveness.heard(start);
                tracing::warn!(upstream = %port.name(), len, limit, "server sent a message over the size limit");
                port.oversized(&conn, id.as_ref(), len, limit).await;
            }
            Inbound::Pong => {
                liveness.pong_seen.store(true, Ordering::Relaxed);
                liveness.heard(start);
            }
            Inbound::Ended(why) => return why,
        }
    }
}
