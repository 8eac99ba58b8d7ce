//! State every listener and connection shares: the backend command, the token store, the
//! fault switches, the shutdown signal, and a liveness handle main waits on at exit.

use crate::auth::Auth;
use crate::cli::Faults;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Shared by all tasks; the last clone dropped tells main that every connection ended.
pub struct Shared {
    pub backend: Vec<String>,
    pub auth: Arc<Auth>,
    pub faults: Faults,
    shutdown: watch::Receiver<bool>,
    next_conn: AtomicU64,
    _alive: mpsc::Sender<()>,
}

impl Shared {
    pub fn new(
        backend: Vec<String>,
        auth: Arc<Auth>,
        faults: Faults,
        shutdown: watch::Receiver<bool>,
        alive: mpsc::Sender<()>,
    ) -> Self {
        Shared {
            backend,
            auth,
            faults,
            shutdown,
            next_conn: AtomicU64::new(1),
            _alive: alive,
        }
    }

    /// A log label for a new connection, e.g. `ws#3 127.0.0.1:5555`.
    pub fn label(&self, kind: &str, peer: std::net::SocketAddr) -> String {
        let n = self.next_conn.fetch_add(1, Ordering::Relaxed);
        format!("{kind}#{n} {peer}")
    }

    /// The next accepted connection, Nagle off, or `None` once shutdown was requested.
    /// Accept errors (e.g. out of file descriptors) are logged and retried.
    pub async fn next_connection(
        &self,
        listener: &tokio::net::TcpListener,
        kind: &str,
    ) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
        loop {
            let accepted = tokio::select! {
                _ = self.shutting_down() => return None,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    // Go's net package turns Nagle off on every TCP connection; the gateway
                    // inherits that.
                    let _ = tcp.set_nodelay(true);
                    return Some((tcp, peer));
                }
                Err(e) => {
                    eprintln!("[gw] {kind}: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Resolves once shutdown (SIGTERM) was requested.
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|down| *down).await;
    }
}
