//! Non-blocking async access to the process's own stdin and stdout.
//!
//! `tokio::io::stdin/stdout` run every read and write on the blocking thread pool: a
//! thread hand-off per message, which is most of the router's added latency. MCP clients
//! give us pipes (Python, Go) or Unix socket pairs (Node/libuv), and both can be driven by
//! the reactor directly, so that is what we do, on a duplicate of the descriptor. Anything
//! else (a terminal, a file) falls back to tokio's portable versions. Owns nothing but the
//! descriptors; knows nothing about JSON.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;
use tokio::net::UnixStream;

/// The client's side of the conversation: our stdin.
pub enum Input {
    Pipe(pipe::Receiver),
    Socket(UnixStream),
    Fallback(tokio::io::Stdin),
}

/// Where protocol bytes go: our stdout.
pub enum Output {
    Pipe(pipe::Sender),
    Socket(UnixStream),
    Fallback(tokio::io::Stdout),
}

enum FdKind {
    Fifo,
    Socket,
    Other,
}

fn kind_of(fd: &OwnedFd) -> io::Result<(FdKind, u64, u64)> {
    let meta = File::from(fd.try_clone()?).metadata()?;
    let ft = meta.file_type();
    let kind = if ft.is_fifo() {
        FdKind::Fifo
    } else if ft.is_socket() {
        FdKind::Socket
    } else {
        FdKind::Other
    };
    Ok((kind, meta.dev(), meta.ino()))
}

fn socket(fd: OwnedFd) -> io::Result<UnixStream> {
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true)?;
    UnixStream::from_std(std)
}

impl Input {
    /// Must be called inside a tokio runtime.
    pub fn stdin() -> Input {
        let attempt = || -> io::Result<Input> {
            let fd = io::stdin().as_fd().try_clone_to_owned()?;
            match kind_of(&fd)?.0 {
                FdKind::Fifo => Ok(Input::Pipe(pipe::Receiver::from_owned_fd(fd)?)),
                FdKind::Socket => Ok(Input::Socket(socket(fd)?)),
                FdKind::Other => Ok(Input::Fallback(tokio::io::stdin())),
            }
        };
        attempt().unwrap_or_else(|_| Input::Fallback(tokio::io::stdin()))
    }
}

impl Output {
    /// Must be called inside a tokio runtime.
    pub fn stdout() -> Output {
        let attempt = || -> io::Result<Output> {
            let fd = io::stdout().as_fd().try_clone_to_owned()?;
            let (kind, dev, ino) = kind_of(&fd)?;
            // O_NONBLOCK is shared by every descriptor of the same pipe: if stderr is that
            // same pipe, blocking log writes would start failing, so stay portable.
            let err = io::stderr().as_fd().try_clone_to_owned()?;
            let (_, edev, eino) = kind_of(&err)?;
            if (dev, ino) == (edev, eino) {
                return Ok(Output::Fallback(tokio::io::stdout()));
            }
            match kind {
                FdKind::Fifo => Ok(Output::Pipe(pipe::Sender::from_owned_fd(fd)?)),
                FdKind::Socket => Ok(Output::Socket(socket(fd)?)),
                FdKind::Other => Ok(Output::Fallback(tokio::io::stdout())),
            }
        };
        attempt().unwrap_or_else(|_| Output::Fallback(tokio::io::stdout()))
    }
}

impl AsyncRead for Input {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Input::Pipe(p) => Pin::new(p).poll_read(cx, buf),
            Input::Socket(s) => Pin::new(s).poll_read(cx, buf),
            Input::Fallback(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Output {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Output::Pipe(p) => Pin::new(p).poll_write(cx, buf),
            Output::Socket(s) => Pin::new(s).poll_write(cx, buf),
            Output::Fallback(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Output::Pipe(p) => Pin::new(p).poll_write_vectored(cx, bufs),
            Output::Socket(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Output::Fallback(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Output::Pipe(p) => p.is_write_vectored(),
            Output::Socket(s) => s.is_write_vectored(),
            Output::Fallback(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Output::Pipe(p) => Pin::new(p).poll_flush(cx),
            Output::Socket(s) => Pin::new(s).poll_flush(cx),
            Output::Fallback(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Output::Pipe(p) => Pin::new(p).poll_shutdown(cx),
            // Shutting down the socket's write half would also end the client's reads
            // early on some platforms; a flush is all that is needed.
            Output::Socket(s) => Pin::new(s).poll_flush(cx),
            Output::Fallback(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
