//! `mcp-test-gateway`: start-up and shutdown. Parses the command line, binds every
//! listener, prints the single `ready …` line to stdout, and on SIGTERM/SIGINT sends the
//! WebSocket shutdown notice to open connections and exits 0.
//!
//! A test double of the mcp-bridge gateway (WebSocket envelope + MCPB TCP frontends) over
//! a stdio MCP server, with fault switches; see `cli.rs` for the switches.

mod auth;
mod backend;
mod cli;
mod envelope;
mod gojson;
mod mcpb;
mod oauth;
mod route;
mod shared;
mod tcp;
mod tls;
mod ws;

use clap::Parser;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

#[tokio::main]
async fn main() {
    let args = cli::Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("mcp-test-gateway: {e}");
        std::process::exit(2);
    }
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind {what} on {addr}: {e}"))
}

async fn run(args: cli::Args) -> Result<(), String> {
    let argv = shell_words::split(&args.backend).map_err(|e| format!("--backend: {e}"))?;
    if argv.is_empty() {
        return Err("--backend is empty".into());
    }
    if args.ws.is_none() && args.tcp.is_none() {
        return Err("nothing to serve: give --ws and/or --tcp".into());
    }
    let auth = Arc::new(auth::Auth::new(
        &args.tokens,
        args.oauth.is_some(),
        args.close_on_expiry,
    ));
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key, args.client_ca.as_deref())?),
        _ => None,
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let shared = Arc::new(shared::Shared::new(
        argv,
        auth.clone(),
        args.faults(),
        shutdown_rx,
        alive_tx,
    ));

    let mut ready = String::from("ready");
    if let Some(addr) = args.ws {
        let listener = bind(addr, "--ws").await?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        ready.push_str(&format!(" ws={local}"));
        let settings = Arc::new(ws::WsSettings {
            path: args.ws_path.clone(),
            max_message: args.max_message,
        });
        tokio::spawn(ws::serve(listener, tls.clone(), settings, shared.clone()));
    }
    if let Some(addr) = args.tcp {
        let listener = bind(addr, "--tcp").await?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        ready.push_str(&format!(" tcp={local}"));
        tokio::spawn(tcp::serve(
            listener,
            tls.clone(),
            args.tcp_mode,
            shared.clone(),
        ));
    }
    if let Some(addr) = args.oauth {
        let listener = bind(addr, "--oauth").await?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        ready.push_str(&format!(" oauth={local}"));
        let endpoint = oauth::OAuth {
            auth,
            clients: oauth::pairs(&args.oauth_clients)?,
            users: oauth::pairs(&args.oauth_users)?,
            token_ttl: Duration::from_secs(args.token_ttl_secs),
            advertised_ttl_secs: args.advertised_ttl_secs.unwrap_or(args.token_ttl_secs),
        };
        tokio::spawn(oauth::serve(listener, Arc::new(endpoint)));
    }
    drop(shared);

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ready}")
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    drop(stdout);
    eprintln!("[gw] {ready}");

    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => eprintln!("[gw] SIGTERM: shutting down"),
        _ = int.recv() => eprintln!("[gw] SIGINT: shutting down"),
    }
    let _ = shutdown_tx.send(true);
    // Every connection holds a clone of `alive`; recv() yields None once all have ended.
    let _ = tokio::time::timeout(Duration::from_secs(3), alive_rx.recv()).await;
    std::process::exit(0);
}
