//! The client's stdio: one reader task (stdin → routing core → an upstream's outbox) and
//! one writer task (the sole owner of stdout). Together they are one client session.
//!
//! The reader frames lines with the size limit, parses each envelope once, and answers bad
//! input itself (-32700 for non-JSON, -32600 for non-JSON-RPC, a `too_large` error for an
//! oversized message, with its id when it could be found); the session always goes on.
//! It never waits on an upstream: the core queues (or refuses) at once. It ends on stdin
//! EOF, a read error, or cancellation. The writer batches whatever is
//! queued into one flush and ends when every sender is gone, after flushing.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::fd::{Input, Output};
use crate::router::{ClientDecision, Core, SessionId};
use crate::wire::{
    release_after_large, ErrorKind, Frame, Message, NdjsonCodec, ParseError, RouterError,
};

/// Why the reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderEnd {
    /// The client closed our stdin.
    Eof,
    /// Shutdown was requested (signal).
    Cancelled,
    /// Reading failed.
    Error,
}

/// Reads the client until EOF or cancellation.
pub async fn read_client(
    input: Input,
    max_message_size: usize,
    read_buffer_size: usize,
    core: Arc<Core>,
    session: SessionId,
    to_client: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
) -> ReaderEnd {
    let codec = NdjsonCodec::new(max_message_size);
    let mut frames = FramedRead::with_capacity(input, codec, read_buffer_size.max(4096));
    loop {
        let frame = tokio::select! {
            biased;
            _ = cancel.cancelled() => return ReaderEnd::Cancelled,
            f = frames.next() => f,
        };
        let reply = match frame {
            None => return ReaderEnd::Eof,
            Some(Err(e)) => {
                tracing::error!("reading stdin failed: {e}");
                return ReaderEnd::Error;
            }
            Some(Ok(Frame::Line(bytes))) => {
                release_after_large(frames.read_buffer_mut(), bytes.len(), read_buffer_size);
                match Message::parse(bytes) {
                    Ok(msg) => {
                        tracing::debug!(kind = ?msg.kind(), id = ?msg.id(), method = ?msg.method(), len = msg.raw().len(), "from client");
                        match core.from_client(session, msg, Instant::now()) {
                            ClientDecision::Reply(bytes) => Some(bytes),
                            ClientDecision::Accepted | ClientDecision::Drop => None,
                        }
                    }
                    Err(ParseError::NotJson(detail)) => {
                        tracing::warn!("client sent a line that is not JSON: {detail}");
                        Some(
                            RouterError::new(ErrorKind::Parse, format!("invalid JSON: {detail}"))
                                .to_response(None),
                        )
                    }
                    Err(ParseError::Invalid { reason, id }) => {
                        tracing::warn!(id = ?id, "client sent an invalid JSON-RPC message: {reason}");
                        Some(
                            RouterError::new(
                                ErrorKind::InvalidRequest,
                                format!("invalid request: {reason}"),
                            )
                            .to_response(id.as_ref()),
                        )
                    }
                }
            }
            Some(Ok(Frame::Oversized { id, len })) => {
                tracing::warn!(id = ?id, len, limit = max_message_size, "client message over the size limit");
                Some(
                    RouterError::new(
                        ErrorKind::TooLarge,
                        format!(
                            "message of {len} bytes exceeds the {max_message_size}-byte limit (local.max_message_size)"
                        ),
                    )
                    .to_response(id.as_ref()),
                )
            }
        };
        if let Some(bytes) = reply {
            if to_client.send(bytes).await.is_err() {
                return ReaderEnd::Error;
            }
        }
    }
}

/// Owns stdout: writes every message as one line, flushing when nothing else is queued.
/// Returns when all senders are dropped (after a final flush) or when the client is gone.
pub async fn write_client(output: Output, mut rx: mpsc::Receiver<Bytes>, buffer_size: usize) {
    let mut out = BufWriter::with_capacity(buffer_size.max(4096), output);
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, 64).await > 0 {
        let mut result = Ok(());
        for bytes in batch.drain(..) {
            result = write_line(&mut out, &bytes).await;
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() && rx.is_empty() {
            result = out.flush().await;
        }
        if let Err(e) = result {
            tracing::warn!("writing to the client failed ({e}); discarding further output");
            // Keep receiving so no producer blocks on a client that is gone.
            while rx.recv().await.is_some() {}
            return;
        }
    }
    let _ = out.flush().await;
}

async fn write_line(out: &mut BufWriter<Output>, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(bytes).await?;
    out.write_all(b"\n").await
}
